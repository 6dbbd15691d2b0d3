"""Alerts where district staff look: a DingTalk or WeCom group robot, e-mail when the robot cannot be reached.

Where to (Airflow Connections, as `AIRFLOW_CONN_<ID>` or stored in Airflow):

- `onenet_alerts`: the group robot's webhook, e.g.
  `https://oapi.dingtalk.com/robot/send?access_token=TOKEN` (DingTalk; a signing secret, if the
  robot has one, as the connection's password: `https://:SEC...@oapi.dingtalk.com/robot/send?...`)
  or `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY` (WeCom). Both take the same
  `{"msgtype": "text", "text": {"content": ...}}` and answer `{"errcode": 0}` when delivered.
- `onenet_alerts_email`: the fallback, `smtp://user:password@mail.example.gov:25?to=a@x.gov,b@x.gov&from=onenet@x.gov`
  (`smtps://` for TLS on connect, `?starttls=true` to upgrade).

What is said (in Chinese): the DAG, the task, the source, the error and the source's last good
data time. Never personal data: the error is cut to one line of at most 300 characters, and ID
numbers, mobile numbers and credentials in URLs are masked before anything leaves the machine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

log = logging.getLogger(__name__)

WEBHOOK_CONN_ID = "onenet_alerts"
EMAIL_CONN_ID = "onenet_alerts_email"
BEIJING_TZ = "Asia/Shanghai"

# How old a source's newest real data (meta.source_freshness.data_until) may be before staff hear
# about it, by the source's own rhythm: tickets and cases arrive through the day; the health-code
# export of day D arrives on the morning of D+1 and vouches for D (so up to ~33 h is normal); the
# registry changes rarely and a quiet week is still complete.
STALE_AFTER: dict[str, timedelta] = {
    "hotline": timedelta(hours=3),
    "city_cases": timedelta(hours=6),
    "health_codes": timedelta(hours=48),
    "grid_registry": timedelta(days=7),
}

KINDS = {"task_failed": "任务失败", "deadline_missed": "未按时完成", "source_stale": "数据源过期"}
SOURCE_NAMES = {"hotline": "12345热线", "city_cases": "城市运行案件", "grid_registry": "网格登记",
                "health_codes": "健康码"}

_ID = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}\d{3}[\dXx](?![0-9A-Za-z])")
_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")
_URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s:]*(?::[^/@\s]*)?@")
_SECRET_QUERY = re.compile(r"((?:access_token|key|token|password|secret)=)[^&\s]+", re.I)


class AlertNotDelivered(RuntimeError):
    """Neither the group robot nor e-mail took the alert; the message names both reasons."""


def scrub(text: str, limit: int = 300) -> str:
    """One line, at most `limit` characters, with ID numbers, mobile numbers and credentials masked."""
    line = " ".join(str(text).split())
    line = _ID.sub("[身份证号已隐去]", line)
    line = _PHONE.sub("[手机号已隐去]", line)
    line = _URL_CREDENTIALS.sub(r"\1***@", line)
    line = _SECRET_QUERY.sub(r"\1***", line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _beijing(instant: datetime | None) -> str:
    if instant is None:
        return "无（尚无成功数据）"
    from zoneinfo import ZoneInfo

    return f"{instant.astimezone(ZoneInfo(BEIJING_TZ)):%Y-%m-%d %H:%M} (北京时间)"


@dataclass(frozen=True)
class Alert:
    """What went wrong, in the words staff read; `text()` is the message."""

    kind: str                      # a key of KINDS
    dag_id: str
    task_id: str | None = None
    source: str | None = None
    error: str = ""
    last_good: datetime | None = None
    run_id: str | None = None

    def text(self) -> str:
        source = (f"{SOURCE_NAMES.get(self.source, self.source)} ({self.source})" if self.source else "—")
        lines = [f"【onenet 告警】{KINDS[self.kind]}",
                 f"DAG：{self.dag_id}",
                 f"任务：{self.task_id or '—'}",
                 f"数据源：{source}",
                 f"错误：{scrub(self.error) or '—'}",
                 f"最近一次有效数据时间：{_beijing(self.last_good) if self.source else '—'}"]
        if self.run_id:
            lines.append(f"运行：{scrub(self.run_id, 120)}")
        lines.append("请数据工程值班人员在 Airflow 中查看该任务日志。")
        return "\n".join(lines)


# --- delivery ---------------------------------------------------------------------------------

def _connection(conn_id: str) -> Any | None:
    """The Connection `conn_id` (AIRFLOW_CONN_* or Airflow's store), or None when none is configured."""
    from connectors.common.config import connection
    from connectors.common.exceptions import ConfigurationError

    try:
        return connection(conn_id, "")
    except ConfigurationError:
        return None


def _webhook_url(conn: Any) -> str:
    """The robot's URL; for a DingTalk robot with a signing secret, signed now (timestamp + sign)."""
    scheme = "https" if conn.scheme == "https" or conn.extra.get("scheme") == "https" else "http"
    query = {k: v for k, v in conn.extra.items() if k != "scheme"}
    if conn.password:  # DingTalk "加签": HMAC-SHA256 of "<timestamp ms>\n<secret>", base64, URL-encoded
        stamp = str(round(time.time() * 1000))
        digest = hmac.new(conn.password.encode(), f"{stamp}\n{conn.password}".encode(), hashlib.sha256).digest()
        query.update(timestamp=stamp, sign=base64.b64encode(digest).decode())
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{conn.host}{port}{conn.path or ''}" + (f"?{urllib.parse.urlencode(query)}" if query else "")


def post_to_robot(conn: Any, text: str, timeout: float = 10.0) -> None:
    """POST the text to the group robot; raise with the robot's own answer if it did not take it."""
    body = json.dumps({"msgtype": "text", "text": {"content": text}}, ensure_ascii=False).encode()
    request = urllib.request.Request(_webhook_url(conn), data=body, method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - a configured https/http URL
        answer = json.loads(response.read() or b"{}")
    if answer.get("errcode", 0) != 0:
        raise RuntimeError(f"the robot refused the message: errcode {answer.get('errcode')}: {answer.get('errmsg')}")


def send_email(conn: Any, subject: str, text: str, timeout: float = 20.0) -> None:
    """Send the alert by SMTP to the connection's `to` addresses."""
    import smtplib

    recipients = [a.strip() for a in conn.extra.get("to", "").split(",") if a.strip()]
    if not recipients:
        raise RuntimeError(f"{conn.conn_id}: no recipients (add ?to=a@x.gov,b@x.gov to the connection)")
    message = EmailMessage()
    message["Subject"], message["From"] = subject, conn.extra.get("from") or conn.login or "onenet@localhost"
    message["To"] = ", ".join(recipients)
    message.set_content(text)
    smtp_class = smtplib.SMTP_SSL if conn.scheme == "smtps" else smtplib.SMTP
    with smtp_class(conn.host or "127.0.0.1", conn.port or (465 if conn.scheme == "smtps" else 25),
                    timeout=timeout) as smtp:
        if conn.extra.get("starttls", "").lower() == "true":
            smtp.starttls()
        if conn.login and conn.password:
            smtp.login(conn.login, conn.password)
        smtp.send_message(message)


def deliver(alert: Alert) -> str:
    """Send `alert` to the group robot, or by e-mail if that fails; return which one took it.

    Raises AlertNotDelivered when neither is configured or both fail (the reasons, never the URL's secrets).
    """
    text = alert.text()
    reasons = []
    robot = _connection(WEBHOOK_CONN_ID)
    if robot is not None:
        try:
            post_to_robot(robot, text)
            log.info("alert sent to the group robot (%s): %s", WEBHOOK_CONN_ID, text.splitlines()[0])
            return "robot"
        except Exception as exc:  # noqa: BLE001 - any failure of the robot means: try e-mail
            reasons.append(f"{WEBHOOK_CONN_ID}: {scrub(str(exc))}")
            log.warning("alert: the group robot failed (%s); trying e-mail", reasons[-1])
    else:
        reasons.append(f"{WEBHOOK_CONN_ID}: not configured")
    mail = _connection(EMAIL_CONN_ID)
    if mail is not None:
        try:
            send_email(mail, f"[onenet] {KINDS[alert.kind]}: {alert.dag_id}", text)
            log.info("alert sent by e-mail (%s)", EMAIL_CONN_ID)
            return "email"
        except Exception as exc:  # noqa: BLE001
            reasons.append(f"{EMAIL_CONN_ID}: {scrub(str(exc))}")
    else:
        reasons.append(f"{EMAIL_CONN_ID}: not configured")
    raise AlertNotDelivered("alert not delivered — " + "; ".join(reasons) + "\n" + text)


# --- what the alert says ----------------------------------------------------------------------

def source_of(dag_id: str) -> str | None:
    """The source a DAG serves (onenet_<source>, onenet_reconcile_<source>), else None."""
    from onenet.orchestration import SOURCES

    name = dag_id.removeprefix("onenet_").removeprefix("reconcile_")
    return name if name in SOURCES else None


def freshness(warehouse: Any = None) -> dict[str, datetime | None]:
    """Each source's newest real data instant (meta.source_freshness.data_until), read-only.

    Empty when the warehouse cannot be opened now (a writer holds it): an alert then says 未知.
    """
    import duckdb

    from onenet import settings

    path = warehouse or settings.warehouse_path()
    try:
        con = duckdb.connect(str(path), read_only=True)
    except (duckdb.Error, OSError) as exc:
        log.info("alert: freshness not readable now (%s)", exc)
        return {}
    try:
        return dict(con.execute("select source, data_until from meta.source_freshness").fetchall())
    except duckdb.Error as exc:
        log.info("alert: meta.source_freshness not readable (%s)", exc)
        return {}
    finally:
        con.close()


def stale_sources(now: datetime, data_until: Mapping[str, datetime | None],
                  stale_after: Mapping[str, timedelta] = STALE_AFTER) -> list[tuple[str, datetime | None]]:
    """The sources whose newest real data is older than their tolerance (or that have none)."""
    return [(source, until) for source, limit in stale_after.items()
            for until in [data_until.get(source)] if until is None or now - until > limit]


# --- the entry points Airflow calls -----------------------------------------------------------

def task_failed(context: Mapping[str, Any]) -> str:
    """A task failed for good (its retries spent): tell staff which, where and what the data is like."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = str(getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?"))
    source = source_of(dag_id)
    exception = context.get("exception")
    error = f"{type(exception).__name__}: {exception}" if exception else "任务失败（见任务日志）"
    alert = Alert("task_failed", dag_id, getattr(ti, "task_id", None), source, error,
                  freshness().get(source) if source else None, getattr(ti, "run_id", None))
    return deliver(alert)


def deadline_missed(context: Mapping[str, Any] | None = None, *, what: str = "", **_: Any) -> str:
    """An Airflow deadline alert fired (the DAG run was not done by its deadline)."""
    run = dict((context or {}).get("dag_run") or {})
    due = (context or {}).get("deadline", {}).get("deadline_time")
    due_text = _beijing(datetime.fromisoformat(due) if isinstance(due, str) else due) if due else "截止时间"
    error = f"{what or '运行'}：截至 {due_text} 仍未完成（当前状态 {run.get('state', '未知')}）"
    return deliver(Alert("deadline_missed", str(run.get("dag_id", "?")), None, None, error, None,
                         run.get("dag_run_id") or run.get("run_id")))


def check_freshness(now: datetime | None = None, warehouse: Any = None) -> dict[str, Any]:
    """Alert on every source whose newest real data is older than STALE_AFTER; what was found and sent."""
    from datetime import UTC

    now = now or datetime.now(UTC)
    data_until = freshness(warehouse)
    if not data_until:
        raise RuntimeError("meta.source_freshness could not be read; the freshness check did not run")
    sent = {}
    for source, until in stale_sources(now, data_until):
        limit = STALE_AFTER[source]
        hours = "尚无数据" if until is None else f"已 {(now - until).total_seconds() / 3600:.1f} 小时没有新数据"
        error = f"{hours}，超过容忍时长 {limit.total_seconds() / 3600:.0f} 小时；请联系该系统的负责单位"
        sent[source] = deliver(Alert("source_stale", f"onenet_{source}", "check_freshness", source, error, until))
    return {"checked": sorted(data_until), "stale": sorted(sent), "sent": sent}
