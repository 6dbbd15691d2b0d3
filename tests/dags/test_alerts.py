"""Alerts where staff look (issue #16): a real HTTP group-robot receiver and a real SMTP receiver on loopback.

The DAG runs are real (dag.test()): a task that fails for good calls the DAGs' notifier, which
posts to the robot of the Connection onenet_alerts, or mails through onenet_alerts_email.
"""

from __future__ import annotations

import json
import re
import socketserver
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest

from onenet import alerts
from onenet import orchestration as orch
from tests.dags.conftest import VILLAGE_DAY

ID_OR_PHONE = re.compile(r"\d{17}[\dXx]|1[3-9]\d{9}")


class Robot:
    """A DingTalk/WeCom-style group robot on loopback: records every message, answers with `errcode`."""

    def __init__(self, errcode: int = 0) -> None:
        self.messages: list[dict] = []
        self.queries: list[str] = []
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                robot.messages.append(json.loads(body))
                robot.queries.append(self.path)
                answer = json.dumps({"errcode": errcode, "errmsg": "ok" if errcode == 0 else "keywords not in content"})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def uri(self, secret: str | None = None) -> str:
        auth = f":{secret}@" if secret else ""
        return f"http://{auth}127.0.0.1:{self.port}/robot/send?access_token=tok123"

    def texts(self) -> list[str]:
        return [m["text"]["content"] for m in self.messages]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """A minimal SMTP server on loopback (EHLO/HELO, MAIL, RCPT, DATA, QUIT) keeping each message."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], bytes]] = []
        box = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                rcpt: list[str] = []
                self.wfile.write(b"220 loopback ESMTP\r\n")
                while line := self.rfile.readline():
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        self.wfile.write(b"250 loopback\r\n")
                    elif verb == b"RCPT":
                        rcpt.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                        self.wfile.write(b"250 ok\r\n")
                    elif verb == b"DATA":
                        self.wfile.write(b"354 go on\r\n")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk
                        box.mails.append((rcpt, data))
                        self.wfile.write(b"250 queued\r\n")
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:  # MAIL, RSET, NOOP
                        self.wfile.write(b"250 ok\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def robot():
    r = Robot()
    yield r
    r.close()


@pytest.fixture
def mailbox():
    m = Mailbox()
    yield m
    m.close()


def _failed_hotline_run(dags, village, monkeypatch):
    """The hotline syncs once (its data is fresh), then its connection breaks: sync fails for good."""
    assert orch.run_dag(dags["onenet_hotline"], orch.day_end_utc(village.day(VILLAGE_DAY))).state == "success"
    monkeypatch.setenv("AIRFLOW_CONN_ONENET_HOTLINE", "http://127.0.0.1:1")  # no token: fails at once
    return orch.run_dag(dags["onenet_hotline"], orch.day_end_utc(village.day(VILLAGE_DAY)))


def _data_until(warehouse, source: str) -> datetime:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute("select data_until from meta.source_freshness where source = ?", [source]).fetchone()[0]
    finally:
        con.close()


def test_a_task_that_fails_for_good_alerts_the_group_robot_in_chinese(dags, village, onenet_env, monkeypatch, robot):
    monkeypatch.setenv("AIRFLOW_CONN_ONENET_ALERTS", robot.uri())
    report = _failed_hotline_run(dags, village, monkeypatch)
    assert report.state == "failed" and report.tasks["sync"] == "failed"
    assert len(robot.messages) == 1, robot.messages  # the sync alone failed; upstream_failed tasks say nothing
    assert robot.messages[0]["msgtype"] == "text" and "access_token=tok123" in robot.queries[0]
    text = robot.texts()[0]
    last_good = _data_until(onenet_env, "hotline").astimezone(orch.BEIJING)
    for needle in ("【onenet 告警】任务失败", "DAG：onenet_hotline", "任务：sync", "数据源：12345热线 (hotline)",
                   "错误：", "hotline: sync failed for", f"最近一次有效数据时间：{last_good:%Y-%m-%d %H:%M} (北京时间)"):
        assert needle in text, text
    assert not ID_OR_PHONE.search(text)


def test_when_the_robot_refuses_the_alert_goes_by_email(dags, village, onenet_env, monkeypatch, mailbox):
    refusing = Robot(errcode=310000)  # DingTalk's answer when the message lacks the robot's keyword
    try:
        monkeypatch.setenv("AIRFLOW_CONN_ONENET_ALERTS", refusing.uri(secret="SECabc"))
        monkeypatch.setenv("AIRFLOW_CONN_ONENET_ALERTS_EMAIL",
                           f"smtp://127.0.0.1:{mailbox.port}?to=duty@district.example,ops@district.example"
                           "&from=onenet@district.example")
        report = _failed_hotline_run(dags, village, monkeypatch)
    finally:
        refusing.close()
    assert report.tasks["sync"] == "failed"
    assert len(refusing.messages) == 1 and "sign=" in refusing.queries[0] and "timestamp=" in refusing.queries[0]
    assert len(mailbox.mails) == 1
    recipients, data = mailbox.mails[0]
    assert recipients == ["duty@district.example", "ops@district.example"]
    mail = message_from_bytes(data, policy=policy.default)
    assert "onenet_hotline" in mail["Subject"] and "任务失败" in mail["Subject"]
    body = mail.get_content()
    assert "DAG：onenet_hotline" in body and "任务：sync" in body and "最近一次有效数据时间：2" in body


def test_a_source_stale_beyond_its_tolerance_alerts(village, onenet_env, monkeypatch, robot):
    from onenet import pipeline

    monkeypatch.setenv("AIRFLOW_CONN_ONENET_ALERTS", robot.uri())
    for source in orch.SOURCES:
        pipeline.sync(source)
    until = {s: _data_until(onenet_env, s) for s in orch.SOURCES}
    # Just inside every tolerance: nothing to say.
    fresh = min(until[s] + alerts.STALE_AFTER[s] for s in orch.SOURCES) - timedelta(minutes=1)
    assert alerts.check_freshness(now=fresh, warehouse=onenet_env)["stale"] == []
    assert robot.messages == []
    # Four hours after the hotline's newest ticket: the hotline alone is stale (tolerance 3 h).
    later = until["hotline"] + timedelta(hours=4)
    expected = sorted(s for s in orch.SOURCES if later - until[s] > alerts.STALE_AFTER[s])
    assert "hotline" in expected
    result = alerts.check_freshness(now=later, warehouse=onenet_env)
    assert result["stale"] == expected and set(result["sent"].values()) == {"robot"}
    text = next(t for t in robot.texts() if "(hotline)" in t)
    assert "数据源过期" in text and "DAG：onenet_hotline" in text and "任务：check_freshness" in text
    assert "已 4.0 小时没有新数据，超过容忍时长 3 小时" in text
    assert f"{until['hotline'].astimezone(orch.BEIJING):%Y-%m-%d %H:%M}" in text
    assert not ID_OR_PHONE.search("\n".join(robot.texts()))


def test_the_deadline_callback_of_the_seven_oclock_extract(monkeypatch, robot, dags):
    monkeypatch.setenv("AIRFLOW_CONN_ONENET_ALERTS", robot.uri())
    (deadline,) = dags["onenet_daily_extract"].deadline
    assert deadline.interval == timedelta(hours=1)
    assert type(deadline.reference).__name__ == "DagRunLogicalDateDeadline"
    assert deadline.callback.path == "onenet.alerts.deadline_missed"
    # What the scheduler hands the callback when the deadline passes (models/deadline.py, handle_miss).
    context = {"dag_run": {"dag_id": "onenet_daily_extract", "dag_run_id": "scheduled__2026-11-04T23:00:00+00:00",
                           "state": "running"},
               "deadline": {"id": "x", "deadline_time": datetime(2026, 11, 5, 0, 0, tzinfo=UTC)}}
    assert alerts.deadline_missed(context=context, **deadline.callback.kwargs) == "robot"
    text = robot.texts()[0]
    assert "未按时完成" in text and "DAG：onenet_daily_extract" in text
    assert "07:00 社区日报导出：截至 2026-11-05 08:00 (北京时间) 仍未完成（当前状态 running）" in text


def test_nothing_personal_or_secret_leaves_in_a_message():
    error = ("quarantine: 110101199003071234 张三 phone 13912345678 / +86 139-1234-5678 at "
             "postgres://reader:s3cret@10.0.0.5/grid?password=hunter2 " + "x" * 500)
    text = alerts.Alert("task_failed", "onenet_grid_registry", "sync", "grid_registry", error, None).text()
    assert "110101199003071234" not in text and "13912345678" not in text and "139-1234-5678" not in text
    assert "s3cret" not in text and "hunter2" not in text and "[身份证号已隐去]" in text
    assert max(len(line) for line in text.splitlines()) < 320 and "最近一次有效数据时间：无" in text


def test_no_channel_configured_is_a_named_error(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_ONENET_ALERTS", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_ONENET_ALERTS_EMAIL", raising=False)
    with pytest.raises(alerts.AlertNotDelivered, match="onenet_alerts: not configured; onenet_alerts_email: not"):
        alerts.deliver(alerts.Alert("task_failed", "onenet_merge", "merge", None, "boom"))
