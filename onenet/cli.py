"""The `onenet` command line: simulate a district, run its silos, and (later) the pipeline."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from onenet import settings

console = Console(stderr=True)


class OnenetError(click.ClickException):
    """A one-line error for the user; exits non-zero."""

    def show(self, file=None) -> None:  # noqa: ARG002 - click's signature
        # click.echo, not rich: rich would wrap a long message over several lines.
        click.echo(click.style("error:", fg="red", bold=True) + " " + self.format_message(), err=True)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False, redirect_stdout=False)


class _Commands(click.Group):
    """The command group: a file the OS refuses (EACCES) ends in one line naming the file and what to
    ask for, not a traceback; the refusal is recorded in the access log where one is set."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PermissionError as exc:
            raise OnenetError(_permission_message(exc, ctx.invoked_subcommand)) from exc


def _permission_message(exc: PermissionError, command: str | None) -> str:
    from warehouse import audit_log
    from warehouse.identity import os_user

    path = exc.filename or "a file"
    user = os_user()
    message = (f"permission denied: {path} is not open to your OS account ({user}); on this host each audience "
               f"reads only its own folders (its OS group). If `onenet {command or ''}` should work for you, "
               f"an administrator adds your account to your audience's group (README, \"Separating the "
               f"audiences on a host\")")
    with contextlib.suppress(Exception):  # the log itself may be what was refused: the message still shows
        audit_log.append(command or "onenet", str(path), principal=None, outcome="denied", reason=message)
    return message


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """onenet: one picture of a district from its siloed governance systems."""


@main.command()
@click.option("--residents", type=click.IntRange(100, 5_000_000), default=2000, show_default=True,
              help="True residents to draw (2,000 is a village, 1,300,000 a district).")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same bytes.")
@click.option("--days", type=click.IntRange(1, 365), default=30, show_default=True,
              help="Simulated days of history the silos will move through.")
@click.option("--start-date", type=click.DateTime(["%Y-%m-%d"]), default="2026-11-01", show_default=True,
              help="Beijing date of day 0.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write the district to [default: $ONENET_DISTRICT or var/district].")
@click.option("--districts", type=click.IntRange(2, 8), default=None,
              help="Generate a city of this many districts instead (folder default: var/city).")
@click.option("--residents-per-district", type=click.IntRange(100, 5_000_000), default=None,
              help="With --districts: residents of each district [default: --residents].")
@click.option("--surge", type=click.FloatRange(1, 10), default=None,
              help="A surge month like March 2022: hotline volume ramping to this multiple (x2 to x10), "
                   "a quarter of health codes flipping in a day, city cases x3, slower silos.")
@click.option("--surge-start-day", type=click.IntRange(1, None), default=None,
              help="First day of the surge's ramp [default: a third into the period].")
def simulate(residents: int, seed: int, days: int, start_date, out: Path | None, districts: int | None,
             residents_per_district: int | None, surge: float | None, surge_start_day: int | None) -> None:
    """Generate a synthetic district (or with --districts a city): true population, four noisy silos, ground truth."""
    from simulators.district.generate import GeneratorError, Step, generate
    from simulators.district.surge import SurgeSpec

    if residents_per_district is not None and districts is None:
        raise OnenetError("--residents-per-district needs --districts")
    if surge is None and surge_start_day is not None:
        raise OnenetError("--surge-start-day needs --surge")
    if districts is not None:
        return _simulate_city(districts, residents_per_district or residents, seed, days, start_date.date(),
                              out or settings.home() / "city",
                              SurgeSpec(peak=surge, start_day=surge_start_day) if surge is not None else None)
    out = out or settings.district_dir()
    with _progress() as progress:
        task = None

        def start(name: str, total: int) -> None:
            nonlocal task
            if task is not None:
                progress.update(task, completed=progress.tasks[task].total)
            task = progress.add_task(name, total=total)

        def advance(n: int) -> None:
            if task is not None:
                progress.advance(task, n)

        try:
            spec = SurgeSpec(peak=surge, start_day=surge_start_day) if surge is not None else None
            manifest = generate(out, residents=residents, seed=seed, days=days, start=start_date.date(),
                                step=Step(start, advance), surge=spec)
        except GeneratorError as exc:
            raise OnenetError(str(exc)) from exc
        if task is not None:
            progress.update(task, completed=progress.tasks[task].total)
    c = manifest["counts"]
    click.echo(f"district written to {out}: {c['persons_true']:,} residents in {c['households']:,} households, "
               f"{c['micro_grids']:,} micro-grids; registry {c['registry_residents_day0']:,} rows, "
               f"{c['hotline_tickets']:,} hotline tickets, {c['city_cases']:,} city cases, "
               f"{c['health_code_rows']:,} health-code rows over {days} days")
    if "surge" in manifest:
        sg = manifest["surge"]
        click.echo(f"surge: hotline x{sg['peak']:g} from day {sg['start_day']}, at its peak on days "
                   f"{sg['start_day'] + sg['ramp_days'] - 1}-{sg['start_day'] + sg['ramp_days'] + sg['peak_days'] - 2}")


def _simulate_city(districts: int, residents: int, seed: int, days: int, start, out: Path, surge) -> None:
    from simulators.city.generate import generate_city
    from simulators.district.generate import GeneratorError

    try:
        manifest = generate_city(out, districts=districts, residents=residents, seed=seed, days=days, start=start,
                                 surge=surge)
    except GeneratorError as exc:
        raise OnenetError(str(exc)) from exc
    c = manifest["counts"]
    names = ", ".join(f"{d['name']} ({d['folder']})" for d in manifest["districts"])
    click.echo(f"city written to {out}: {names}; {c['city_persons']:,} true persons, {c['movers']:,} movers, "
               f"{c['stale_registrations']:,} stale registrations, {c['cross_callers']:,} callers from another "
               f"district, {c['cross_district_tickets']:,} tickets about another district")


@main.group()
def simulators() -> None:
    """Start, stop, inspect and advance the four simulated silos."""


def _root_option(f):
    return click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="The simulated district [default: $ONENET_DISTRICT or var/district].")(f)


@simulators.command("up")
@_root_option
@click.option("--only", type=click.Choice(["grid_registry", "hotline", "city_cases", "health_codes"]),
              help="Start one silo only.")
@click.option("--day", type=click.IntRange(0, None), default=None, help="Advance the clock to this day first.")
def simulators_up(root: Path | None, only: str | None, day: int | None) -> None:
    """Start the silos in the background, bound to 127.0.0.1."""
    from simulators import runner

    root = root or settings.district_dir()
    try:
        if day is not None:
            runner.advance(root, day)
        for s in runner.up(root, only):
            click.echo(f"{s.name:<14} up   pid {s.pid}  {s.url or ''}")
    except runner.SimulatorError as exc:
        raise OnenetError(str(exc)) from exc


@simulators.command("down")
@_root_option
@click.option("--only", type=click.Choice(["grid_registry", "hotline", "city_cases", "health_codes"]))
def simulators_down(root: Path | None, only: str | None) -> None:
    """Stop the running silos."""
    from simulators import runner

    stopped = runner.down(root or settings.district_dir(), only)
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@simulators.command("status")
@_root_option
def simulators_status(root: Path | None) -> None:
    """Show which silos run, where, and the simulated day."""
    from simulators import clock, runner

    root = root or settings.district_dir()
    click.echo(f"simulated day {clock.read_day(root)}")
    for s in runner.status(root):
        click.echo(f"{s.name:<14} {'up' if s.running else 'down':<5} {s.url or ''}")


@simulators.command("advance")
@_root_option
@click.option("--to", "to_day", type=click.IntRange(0, None), default=None, help="Target day.")
@click.option("--days", type=click.IntRange(1, None), default=None, help="Days to move on [default: 1].")
@click.option("--minutes", type=click.IntRange(1, None), default=None,
              help="Minutes to move on instead (e.g. 15, one hotline cycle).")
def simulators_advance(root: Path | None, to_day: int | None, days: int | None, minutes: int | None) -> None:
    """Move the simulated clock forward; the silos show the new day's (or minutes') data."""
    from simulators import clock, runner

    root = root or settings.district_dir()
    if minutes is not None and (to_day is not None or days is not None):
        raise OnenetError("--minutes moves the clock on its own; leave out --to and --days")
    try:
        if minutes is not None:
            day, minute = runner.advance_minutes(root, minutes)
            at = clock.instant_utc(clock.start_date(root), day, minute).astimezone(clock.BEIJING)
            click.echo(f"simulated time is now {at:%Y-%m-%d %H:%M} (Beijing), day {day} + {minute} min")
            return
        target = to_day if to_day is not None else clock.read_day(root) + (days or 1)
        runner.advance(root, target)
    except runner.SimulatorError as exc:
        raise OnenetError(str(exc)) from exc
    click.echo(f"simulated day is now {target}")


@main.command("sync")
@click.argument("source", type=click.Choice(["hotline", "city_cases", "grid_registry", "health_codes", "all"]))
@click.option("--full-refresh", is_flag=True,
              help="Read everything again and land the difference with raw, deletes included (the registry "
                   "and the APIs reconcile, see `onenet reconcile`); the cursor restarts from this read.")
@click.option("--retry-file", metavar="NAME", default=None,
              help="health_codes only: read this file of the drop again, e.g. one set aside as unreadable "
                   "(meta.quarantined_files) once it has been fixed.")
def sync_command(source: str, full_refresh: bool, retry_file: str | None) -> None:
    """Sync a source (or all four) from its system into the warehouse's raw layer."""
    from connectors.common.exceptions import ConnectorError
    from onenet import pipeline

    if retry_file is not None and source != "health_codes":
        raise click.BadParameter("applies to `onenet sync health_codes` only", param_hint="--retry-file")
    sources = list(pipeline.SOURCES) if source == "all" else [source]
    failed: list[str] = []  # one reason per failed source
    with _progress() as progress:
        task = progress.add_task("sync", total=len(sources))
        for name in sources:
            progress.update(task, description=f"sync {name}")
            try:
                # Summary lines go to stdout (scripts read them); the progress bar stays on stderr.
                if full_refresh and pipeline.reconcilable(name):
                    # A full refresh that only appends cannot notice a delete or a revert:
                    # reconcile (land exactly the difference) and restart the cursor.
                    pipeline.reconcile(name, reset_cursor=True, on_result=lambda r: click.echo(r.summary()))
                else:
                    pipeline.sync(name, full_refresh=full_refresh, retry_file=retry_file,
                                  on_result=lambda r: click.echo(r.summary()))
            except ConnectorError as exc:
                failed.append(str(exc))
            progress.advance(task)
    if failed:
        # Each reason names the source; nothing of a failed load was landed and its state did not move.
        raise OnenetError("sync failed: " + " | ".join(failed))


@main.command("reconcile")
@click.argument("source", type=click.Choice(["hotline", "city_cases", "grid_registry", "health_codes", "all"]))
def reconcile_command(source: str) -> None:
    """Compare a source's complete current state with raw and land exactly the difference.

    Finds missed, back-dated and silent updates, reverts, hard deletes and phantoms; one line
    per table by kind, then the totals. Runs are in meta.reconciliations, keys by kind in
    meta.reconciliation_keys. Validate and merge afterwards as after a sync.
    """
    from connectors.common.exceptions import ConnectorError
    from connectors.common.reconcile import KINDS, LABELS
    from onenet import pipeline

    sources = [s for s in pipeline.SOURCES if pipeline.reconcilable(s)] if source == "all" else [source]
    failed: list[str] = []
    totals = dict.fromkeys(KINDS, 0)

    def show(r) -> None:  # noqa: ANN001 (a LoadResult)
        click.echo(r.summary())
        for kind, n in (r.reconciled or {}).items():
            totals[kind] += n

    with _progress() as progress:
        task = progress.add_task("reconcile", total=len(sources))
        for name in sources:
            progress.update(task, description=f"reconcile {name}")
            try:
                pipeline.reconcile(name, on_result=show)
            except ConnectorError as exc:
                failed.append(str(exc))
            progress.advance(task)
    click.echo("found: " + ", ".join(f"{LABELS[k]} {n:,}" for k, n in totals.items()))
    if failed:
        raise OnenetError("reconcile failed: " + " | ".join(failed))


@main.command("validate")
@click.argument("source", type=click.Choice(["hotline", "city_cases", "grid_registry", "health_codes", "all"]))
def validate_command(source: str) -> None:
    """Validate what was synced since the last run: quarantine bad rows, pass the rest to staging."""
    from connectors.common.exceptions import ConnectorError
    from expectations.engine import ValidationEngineError
    from onenet import pipeline

    sources = list(pipeline.SOURCES) if source == "all" else [source]
    blocked: list[str] = []
    docs: set[str] = set()
    with _progress() as progress:
        task = progress.add_task("validate", total=len(sources))
        for name in sources:
            progress.update(task, description=f"validate {name}")
            try:
                for r in pipeline.validate(name):
                    click.echo(r.summary())
                    if r.status == "blocked":
                        blocked.append(f"{r.source}.{r.entity}: {r.message}")
                    if r.docs_url:  # a page of the site; the summary links the site's front page
                        docs.add(r.docs_url.split("/local_site/")[0] + "/local_site/index.html")
            except (ConnectorError, ValidationEngineError) as exc:
                blocked.append(str(exc))
            progress.advance(task)
    for url in sorted(docs):
        click.echo(f"Data Docs: {url}")
    if blocked:
        raise OnenetError("validation blocked: " + " | ".join(blocked))


@main.command()
@click.option("--residents", type=click.IntRange(100, 50_000), default=2000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--day", type=click.IntRange(0, 29), default=29, show_default=True,
              help="Simulated day to run the pipeline for (0-29; 29 = the whole month).")
@click.option("--keep-running", is_flag=True, help="Leave the silos running afterwards.")
def demo(residents: int, seed: int, day: int, keep_running: bool) -> None:
    """The main job, through Airflow: a fresh village, its four silos, every DAG, one readable summary.

    Prepares a local Airflow (SQLite metadata in $ONENET_HOME/airflow), generates a village, starts
    the silos on 127.0.0.1, then runs each source DAG (sync → validate → Asset), the merge DAG
    and the daily extract DAG (extracts, reports, dashboard) with dag.test().
    """
    import os

    from onenet import orchestration, showcase
    from onenet.summary import pipeline_summary
    from simulators import runner

    # Task logs go to $ONENET_HOME/airflow/logs; the screen keeps what a person reads.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    home = settings.home()
    try:
        run = orchestration.run_village_through_airflow(
            home, residents=residents, seed=seed, day=day, keep_running=keep_running,
            warehouse=home / "demo.duckdb", airflow_home=home / "airflow", echo=click.echo,
            show=showcase.show)
    except runner.SimulatorError as exc:
        raise OnenetError(str(exc)) from exc
    click.echo(run.summary())
    for line in pipeline_summary(run.warehouse, run.gx_dir, run.exports):
        click.echo(line)
    if keep_running:
        click.echo(f"silos still running; stop them with `onenet simulators down --root {home / 'district'}`")
    if not run.ok:
        raise OnenetError("some DAG runs failed (see above); the task logs are under "
                          f"{run.airflow_home / 'logs'}")


@main.command("merge")
@click.option("--full", is_flag=True,
              help="Resolve every record again and re-estimate the match parameters, instead of only the "
                   "persons the new data can touch (a weekly full run keeps the parameters current).")
def merge_command(full: bool) -> None:
    """Standardise, resolve persons and incidents, rebuild core and marts (one transaction)."""
    from connectors.common.exceptions import ConnectorError
    from onenet import pipeline
    from warehouse.merge import MergeError
    from warehouse.pseudonym import PseudonymKeyError
    from warehouse.publish import PublishError

    try:
        summary = pipeline.merge(full=full)
    except (ConnectorError, MergeError, PublishError, PseudonymKeyError) as exc:
        raise OnenetError(str(exc)) from exc
    for line in summary.summary_lines():
        click.echo(line)


def _principal_options(f):
    f = click.option("--community", default=None,
                     help="Act for one community only (narrows what the access file grants; never widens).")(f)
    return click.option("--role", type=click.Choice(["data_engineer", "district_analyst", "community_staff"]),
                        default=None, help="Act in a narrower role than the access file grants you "
                                           "(an engineer as an analyst, say); never a wider one.")(f)


def _principal(role: str | None, community: str | None):
    """Who is asking: the OS user, mapped by the administrators' access file, narrowed by the options.

    A refusal (unmapped user, a widening option) is recorded in the access log too.
    """
    from onenet.deployment import DeploymentError
    from warehouse import audit_log
    from warehouse.access import AccessDenied
    from warehouse.identity import resolve_principal

    try:
        return resolve_principal(role, community)
    except AccessDenied as exc:
        with contextlib.suppress(DeploymentError):  # a log path the host's file contradicts: no log to write
            audit_log.append("identify", f"role={role} community={community}", principal=None,
                             outcome="denied", reason=str(exc))
        raise OnenetError(str(exc)) from exc


def _day_option(f):
    return click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), required=True,
                        help="The Beijing day (YYYY-MM-DD).")(f)


@main.command("extract")
@_day_option
@_principal_options
def extract_command(day, role: str | None, community: str | None) -> None:
    """Write the daily Excel extract of your community (or, for engineers, of every community)."""
    from onenet import pipeline
    from warehouse.access import AccessDenied
    from warehouse.extracts.community import ExtractError
    from warehouse.publish.snapshot import SnapshotError

    who = _principal(role, community)
    try:
        for result in pipeline.extract(day.date(), community=community, who=who):
            click.echo(result.summary())
    except (AccessDenied, ExtractError, SnapshotError) as exc:
        raise OnenetError(str(exc)) from exc


@main.command("report")
@click.option("--template", "template", required=True,
              help="A template name (epidemic_daily, hotline_monthly, or one in $ONENET_TEMPLATES_DIR).")
@_day_option
@_principal_options
def report_command(template: str, day, role: str | None, community: str | None) -> None:
    """Fill a department's report template from your audience's snapshot for the period containing --date."""
    from onenet import pipeline
    from warehouse.access import AccessDenied
    from warehouse.publish.snapshot import SnapshotError
    from warehouse.reports import TemplateError

    who = _principal(role, community)
    try:
        click.echo(pipeline.report(template, day.date(), who=who).summary())
    except (AccessDenied, TemplateError, SnapshotError) as exc:
        raise OnenetError(str(exc)) from exc


@main.command("dashboard")
@_principal_options
def dashboard_command(role: str | None, community: str | None) -> None:
    """Rebuild the analyst dashboard: one HTML page with charts, readable offline with no server."""
    from onenet import pipeline
    from warehouse.access import AccessDenied
    from warehouse.publish.snapshot import SnapshotError

    who = _principal(role, community)
    try:
        path = pipeline.dashboard(who=who)
    except (AccessDenied, SnapshotError) as exc:
        raise OnenetError(str(exc)) from exc
    click.echo(f"dashboard: {path.as_uri()}")


@main.command("dictionary")
def dictionary_command() -> None:
    """Write the data dictionary of the marts (every table's grain, every column's meaning)."""
    from onenet import pipeline

    click.echo(f"data dictionary: {pipeline.dictionary()}")


@main.command("export")
@_principal_options
def export_command(role: str | None, community: str | None) -> None:
    """Copy your audience's published snapshot (Parquet) into its export folder (logged)."""
    from onenet import pipeline
    from warehouse.access import AccessDenied
    from warehouse.publish.snapshot import SnapshotError

    who = _principal(role, community)
    try:
        folder, counts = pipeline.export_marts(who=who)
    except (AccessDenied, SnapshotError) as exc:
        raise OnenetError(str(exc)) from exc
    click.echo(f"exported to {folder}: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))


@main.command("query")
@click.argument("sql")
@_principal_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the result to a .csv (UTF-8 with BOM) or .parquet file instead of showing it.")
@click.option("--limit", type=click.IntRange(1, None), default=50, show_default=True,
              help="Rows shown on screen (files get every row).")
def query_command(sql: str, role: str | None, community: str | None, out: Path | None, limit: int) -> None:
    """Run read-only SQL on your audience's snapshot (engineers: the warehouse); the read is logged."""
    from rich.table import Table
    from rich.text import Text

    from onenet import pipeline
    from warehouse.access import AccessDenied
    from warehouse.publish.snapshot import SnapshotError
    from warehouse.query import QueryError, write_result

    who = _principal(role, community)
    try:
        result = pipeline.query(sql, who=who)
        if out:
            write_result(result, out)
            click.echo(f"{result.num_rows:,} rows written to {out}")
            return
    except (AccessDenied, QueryError, SnapshotError) as exc:
        raise OnenetError(str(exc)) from exc
    # Cells are Text, not strings: Rich would read a silo's "[/]" or "[link=...]" as markup.
    table = Table(show_lines=False)
    for name in result.column_names:
        table.add_column(Text(name))
    for row in result.slice(0, limit).to_pylist():
        table.add_row(*(Text("" if v is None else str(v)) for v in row.values()))
    Console().print(table)
    if result.num_rows > limit:
        click.echo(f"… {result.num_rows - limit:,} more rows (use --out to get them all)")


@main.group()
def audit() -> None:
    """The access log: check its hash chain, show its last records."""


@audit.command("verify")
@click.option("--log", "log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="the access log (default $ONENET_ACCESS_LOG or <home>/audit/access-log.jsonl)")
def audit_verify(log: Path | None) -> None:
    """Recompute the chain (and the pipeline's own, where it has one); exit 1 naming the first broken line."""
    from warehouse.audit_log import chains, log_path, verify

    found = chains(log or log_path())
    for path in found:
        where = f" ({path})" if len(found) > 1 else ""
        try:
            result = verify(path)
        except OSError as exc:
            raise OnenetError(f"cannot read the access log {path}: {exc.strerror}") from exc
        if not result.ok:
            raise OnenetError(f"access log{where} broken at line {result.first_broken}: {result.reason}")
        if result.records == 0:
            click.echo(f"access log OK: no records yet ({path})")
            continue
        click.echo(f"access log OK: {result.records:,} records, chain intact{where}")


@audit.command("show")
@click.option("--tail", "n", type=click.IntRange(min=1), default=20, show_default=True,
              help="how many of the last records")
@click.option("--log", "log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="the access log (default $ONENET_ACCESS_LOG or <home>/audit/access-log.jsonl)")
def audit_show(n: int, log: Path | None) -> None:
    """The last records: when, who, as what, did what, how many rows, allowed or denied."""
    from warehouse.audit_log import log_path, tail_all

    path = log or log_path()
    if not path.exists():
        raise OnenetError(f"no access log at {path} (set ONENET_ACCESS_LOG or pass --log)")
    try:
        rows = tail_all(n, path)
    except (ValueError, OSError) as exc:
        raise OnenetError(f"cannot read {path}: {exc}; run `onenet audit verify`") from exc
    for r in rows:
        who = f"{r.get('os_user')} as {r.get('role') or '-'}"
        if r.get("community"):
            who += f" of {r['community']}"
        target = " ".join(str(r.get("target") or "").split())
        target = target if len(target) <= 80 else target[:79] + "…"
        extra = f" → {r['output']}" if r.get("output") else ""
        extra += " (full values)" if r.get("full_values") else ""
        extra += f": {r['reason']}" if r.get("reason") else ""
        click.echo(f"{r.get('seq'):>6} {r.get('at')} {r.get('outcome'):<7} {who} "
                   f"{r.get('action')} {r.get('rows', 0):,} rows: {target}{extra}")


@main.group()
def city() -> None:
    """The city layer: one city warehouse from what each district publishes for the city."""


@city.command("build")
@click.argument("published", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The city warehouse [default: <ONENET_HOME>/city.duckdb].")
def city_build(published: tuple[Path, ...], out: Path | None) -> None:
    """Build the city warehouse from districts' published folders (each district's $ONENET_PUBLISHED,
    published with ONENET_CITY_KEY set): land, resolve city persons, marts; one summary."""
    from warehouse.city.build import CityBuildError, build
    from warehouse.city.publish import CityPublishError

    try:
        summary = build(out or settings.home() / "city.duckdb", list(published))
    except (CityBuildError, CityPublishError) as exc:
        raise OnenetError(str(exc)) from exc
    for line in summary.lines():
        click.echo(line)


def run() -> None:  # pragma: no cover - console entry
    main(prog_name="onenet")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
