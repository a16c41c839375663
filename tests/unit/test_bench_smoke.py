"""Every benchmark script runs end to end in a tiny configuration and writes its figures.

Not a measurement: this keeps bench/ from rotting when the code it drives changes (the store's
scripts, the CLI, the HTTP API). Each script starts its own real redis-server and, where it
measures the service, the real `mmserver` command.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(script: str, out: Path, *args: str, timeout: float = 60) -> dict:
    # profile_mm.py takes a subcommand first; its options follow it.
    argv = [*args, "--out", str(out)] if script == "profile_mm.py" else ["--out", str(out), *args]
    done = subprocess.run([sys.executable, str(BENCH / script), *argv],
                          capture_output=True, text=True, timeout=timeout, cwd=BENCH.parent)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


def test_matcher(tmp_path):
    report = run("bench_matcher.py", tmp_path / "m.json", "--sizes", "200")
    assert {row["scenario"] for row in report["results"]} == {"1v1", "5v5-parties"}
    assert all(row["proposals"] > 0 for row in report["results"])


def test_quality(tmp_path):
    report = run("bench_quality.py", tmp_path / "q.json", "--ticks", "40")
    rows = {(row["scenario"], row["arrivals_per_s"]): row for row in report["results"]}
    assert {scenario for scenario, _ in rows} == {"1v1", "5v5"}
    for (scenario, _), row in rows.items():
        assert row["reference"]["matched_tickets"] > 0
        if scenario == "1v1":  # the matcher forms as many pairs as the exact reference
            assert row["matcher"]["matches_per_tick"] == row["reference"]["matches_per_tick"]


def test_create_ratio(tmp_path):
    report = run("bench_create.py", tmp_path / "c.json", "--rounds", "1", "--seconds", "0.5",
                 "--concurrency", "4", "--threads", "4")
    assert report["summary"]["mmserver"]["ok_per_s_median"] > 0
    assert report["summary"]["baseline"]["ok_per_s_median"] > 0
    assert 0 < report["ratio"] < 5
    assert {row["target"] for row in report["rounds"]} == {"baseline", "mmserver"}


def test_tick(tmp_path):
    report = run("bench_tick.py", tmp_path / "t.json", "--sizes", "200", "--rounds", "1", "--aof-rewrite-first")
    rows = {row["scenario"]: row for row in report["results"]}
    assert set(rows) == {"1v1", "5v5-parties"}
    # Rewritten before the tick; 200 tickets never start a rewrite of their own (64 MB at least).
    assert rows["1v1"]["aof_rewrite_first"] and not rows["1v1"]["aof_rewrite_during_tick"]
    assert rows["1v1"]["queued"] == 200
    assert rows["1v1"]["tickets_matched"] > 150  # uniform MMRs: nearly all pair up
    assert rows["1v1"]["matching_tick_redis_scripts_s"] > 0  # its claims ran in Redis


def test_aof_rewrites_are_seen(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        from common import AofRewrites, RedisServer, rewrite_aof
    finally:
        sys.path.remove(str(BENCH))
    server = RedisServer(tmp_path / "redis").start()
    try:
        client = server.client()
        client.set("k", "v")
        with AofRewrites(client) as quiet:
            client.set("k", "w")
        with AofRewrites(client) as rewritten:
            rewrite_aof(client)  # returns once the rewrite is done
        assert not quiet.during and rewritten.during
        assert client.info("persistence")["aof_rewrite_in_progress"] == 0
        # One already running when the block starts counts too (enough keys that the child
        # is still writing them, and not yet reaped, when the block begins).
        client.eval("for i = 1, 200000 do redis.call('SET', 'k' .. i, i) end", 0)
        client.bgrewriteaof()
        with AofRewrites(client) as running:
            pass
        assert running.during
        assert rewrite_aof(client)  # waits for it to end (and asks for none of its own)
        # An RDB save forks too. Redis 7 counts rewrites apart from other forks; 6.2 does not,
        # so a 6.2 that saves RDB files is refused rather than misread.
        if "aof_rewrites" in client.info("persistence"):
            with AofRewrites(client) as saved:
                client.bgsave()
                while int(client.info("persistence")["rdb_bgsave_in_progress"]):
                    time.sleep(0.02)
            assert not saved.during
        else:
            client.config_set("save", "900 1")
            with pytest.raises(RuntimeError, match="not only rewrites"):
                with AofRewrites(client):
                    pass
        client.close()
    finally:
        server.stop()


def test_rules(tmp_path):
    report = run("bench_rules.py", tmp_path / "r.json", "--count", "1000", "--rounds", "1", "--settle-s", "0")
    rows = {row["scenario"]: row for row in report["results"]}
    assert set(rows) == {"1v1", "5v5-rules", "5v5-short-of-roles"}
    assert rows["5v5-short-of-roles"]["settled_tick_s"] > 0 and rows["5v5-short-of-roles"]["arrivals_tick_s"] > 0
    assert rows["5v5-rules"]["queued"] == 1000
    assert rows["5v5-rules"]["tickets_matched"] > 0  # the rules mode forms matches at all
    assert report["ratios"]["steady_tick"] > 0
    rules = rows["5v5-rules"]  # the tick after the matching one re-examines the tickets it left
    assert rules["left"] == 1000 - rules["tickets_matched"] > 0
    assert rules["next_tick_s"] > 0 and rules["next_tick_us_per_ticket"] > 0


def test_rules_matcher(tmp_path):
    report = run("bench_rules_matcher.py", tmp_path / "rm.json", "--tickets", "2000", "--rounds", "1")
    rows = {row["case"]: row for row in report["results"]}
    assert set(rows) == {"plain-1v1", "steady", "matching", "leftover"}
    assert rows["matching"]["matched_tickets"] > 0
    assert rows["leftover"]["tickets"] == 2000 - rows["matching"]["matched_tickets"]


def test_rules_waiting(tmp_path):
    report = run("bench_rules_waiting.py", tmp_path / "w.json", "--tickets", "2000", "--arrivals", "20",
                 "--ticks", "4")
    [row] = report["results"]
    assert row["tick_with_memo_s"] > 0 and row["tick_without_s"] > 0
    assert row["answers_reused_per_tick"] > 0  # the memo answered for tickets kept waiting


def test_redis_hold(tmp_path):
    report = run("bench_redis_hold.py", tmp_path / "h.json", "--count", "600", "--aof-rewrite-first")
    rows = {row["scenario"]: row for row in report["results"]}
    assert set(rows) == {"5v5-alloc", "5v5-rules-steady"}
    assert all(row["aof_rewrite_first"] and not row["aof_rewrite_during_tick"] for row in rows.values())
    assert rows["5v5-alloc"]["matches_claimed"] == rows["5v5-alloc"]["allocated"] > 0
    assert rows["5v5-alloc"]["allocation_calls"] >= 1 and rows["5v5-alloc"]["allocation_s"] > 0
    assert rows["5v5-alloc"]["others_waited"]["pings"] > 0
    assert rows["5v5-rules-steady"]["matches_claimed"] == 0


def test_notify(tmp_path):
    report = run("bench_notify.py", tmp_path / "n.json", "--rounds", "1", "--idle", "5", "--probes", "5",
                 "--rate", "50")
    for kind in ("steady", "burst"):
        assert report["summary"][kind]["missing"] == 0
        assert report["summary"][kind]["errors"] == 0
    assert all(row["answered"] == 5 for row in report["rounds"])


def test_waiters(tmp_path):
    report = run("bench_waiters.py", tmp_path / "w.json", "--waiters", "30", "--rounds", "1", "--seconds", "0.5",
                 "--wait", "2", "--probes", "5", "--rate", "50", timeout=120)
    summary = report["summary"]
    assert summary["creations_per_s_without"] > 0 and summary["creations_per_s_with"] > 0
    assert summary["errors"] == 0 and summary["non_2xx"] == 0
    assert all(row["long_polls"] == 30 for row in report["rounds"] if row["phase"] == "with")
    for kind in ("steady", "burst"):
        assert summary[f"notify_{kind}"]["missing"] == 0
    assert report["thread_cost"]["rss_kib_per_thread"] > 0


def test_e2e(tmp_path):
    report = run("bench_e2e.py", tmp_path / "e.json", "--rounds", "1", "--seconds", "1", "--rate", "20",
                 "--tick-ms", "100")
    assert report["summary"]["assigned"] == report["summary"]["tickets"] == 20
    assert report["summary"]["client_p50_ms_median"] > 0


def test_lifecycle(tmp_path):
    report = run("bench_lifecycle.py", tmp_path / "l.json", "--rounds", "1", "--long-polls", "4",
                 "--load-seconds", "0.5", "--drain-delay", "0")
    assert report["summary"]["exit_statuses"] == [0]
    assert report["summary"]["ready_external_s_median"] > 0
    assert report["stops"][0]["creates"].get("201", 0) > 0


@pytest.mark.parametrize("tickets", [600])
def test_memory(tmp_path, tickets):
    report = run("bench_memory.py", tmp_path / "mem.json", "--tickets", str(tickets), "--settle", "0.5")
    row = report["rounds"][0]
    assert row["tickets"] == tickets
    assert row["mmserver_rss_full_mib"] > 0
    assert 0 < row["ticket_record_bytes"] < 2000
    assert row["event_log_bytes_per_ticket"] > 0  # each creation's ticket.queued


def test_profiles(tmp_path):
    request = run("profile_mm.py", tmp_path / "r.json", "request", "--requests", "50")
    assert request["per_request_us"] > 0
    assert any("create_ticket" in row[0] for row in request["python_cumulative"])
    tick = run("profile_mm.py", tmp_path / "t.json", "tick", "--tickets", "400")
    assert tick["claimed"] > 150
    assert "evalsha" in tick["redis_usec_by_command"]


def test_auth(tmp_path):
    report = run("bench_auth.py", tmp_path / "a.json", "--rounds", "1", "--calls", "20")
    names = {row["credential"] for row in report["results"]}
    assert {"ticket token (baseline)", "player JWT HS256 cold", "player JWT ES256 warm"} <= names
    assert all(row["us_per_call_median"] > 0 for row in report["results"])


def test_webhooks(tmp_path):
    report = run("bench_webhooks.py", tmp_path / "w.json", "--rounds", "1", "--rate", "20", "--seconds", "0.5",
                 "--burst", "50")
    row = report["rounds"][0]
    assert row["steady_events"] == 10 and row["burst_events"] == 50
    assert row["latency_p50_ms"] > 0 and row["burst_delivered_per_s"] > 0
    assert report["summary"]["delivered"] == 60


def test_event_log(tmp_path):
    report = run("bench_event_log.py", tmp_path / "e.json", "--tickets", "200", "--lifecycles", "20")
    rows = {row["phase"]: row for row in report["results"]}
    assert rows["create"]["events"] == 200 and rows["create"]["xadd_calls"] == 200
    assert rows["match (one tick)"]["events"] == 200
    # A whole match: accepted x2, match.accepted, assigned x2, match.assigned, finished x2, match.finished.
    assert rows["accept, allocate, finish"]["events"] == 20 * 9
    assert report["event_bytes"] > 0


def test_redis_cpu(tmp_path):
    report = run("bench_redis_cpu.py", tmp_path / "rc.json", "--rounds", "1", "--players", "40",
                 "--poll-tickets", "20", "--poll-rounds", "2", "--no-before", "--clients", "3", timeout=120)
    assert report["params"]["clients"] == 3
    summary = report["summary"]
    assert set(summary) == {"cache off", "after"}
    for variant in summary.values():
        for mode in ("duel", "squad"):
            assert variant["lifecycle"][mode]["assigned_all"]  # every player went the whole way
            assert variant["lifecycle"][mode]["total"]["cpu_us"] > 0
        assert variant["polls"]["still_queued_all"]  # polled tickets stay alive
    # The cache answers the read after a creation itself.
    assert summary["after"]["lifecycle"]["duel"]["phases"]["read"]["script_us"] == 0


def test_fleet(tmp_path):
    report = run("bench_fleet.py", tmp_path / "f.json", "--rate", "5", "--duration", "2", "--idle", "0.5",
                 "--replicas", "2", "--by-script", timeout=120)
    assert report["created"] == 10 and report["assigned"] == 10 and report["failures"] == {}
    assert report["redis_cpu_measured_s"] > 0 and report["redis_cpu_predicted_s"] > 0
    assert report["scripts"]["create"]["calls"] == 10
    assert report["replica_polls_per_s"] > 0


def test_claim(tmp_path):
    """bench_claim.py: prepare, a timed run, and its state check twice on the same input
    (deterministic: the same file both times), then once without the claims' events."""
    def claim(*args):
        done = subprocess.run([sys.executable, str(BENCH / "bench_claim.py"), *args],
                              capture_output=True, text=True, timeout=120, cwd=BENCH.parent)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout

    data = tmp_path / "data"
    claim("prepare", "--scenario", "5v5-rules", "--count", "3000", "--dir", str(data))
    out = claim("run", "--dir", str(data), "--rounds", "1")
    assert json.loads(out.splitlines()[0])["claimed"] > 0
    claim("run", "--dir", str(data), "--batch", "20", "--check", str(tmp_path / "a.json"))
    claim("run", "--dir", str(data), "--batch", "20", "--check", str(tmp_path / "b.json"))
    first = json.loads((tmp_path / "a.json").read_text())
    assert first["state"] and first["published"] and first["replies"]
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    # Without its events, the script claims the same and leaves no ticket.matched behind.
    claim("run", "--dir", str(data), "--batch", "20", "--without-events", "--check", str(tmp_path / "c.json"))
    bare = json.loads((tmp_path / "c.json").read_text())
    assert bare["replies"] == first["replies"]
    assert "ticket.matched" in first["state"]["mm:ev"] and "ticket.matched" not in bare["state"]["mm:ev"]


def test_rules_parties(tmp_path):
    report = run("bench_rules_parties.py", tmp_path / "rp.json", "--sizes", "300", "--unbounded")
    assert {(row["queue"], row["bound"]) for row in report["results"]} == {
        (q, b) for q in ("realistic", "random") for b in ("bounded", "unbounded")}
    assert all(row["matches"] > 0 for row in report["results"])
