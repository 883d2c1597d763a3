//! ping-pong under Xen (QEMU TCG): xen/nodes/ping-pong.toml as it is. ping and pong exchange
//! rounds over the bus on one derived channel; the `pingpong-kill` dom0 hook destroys pong mid-run; ping
//! must see it go, the launcher restart it, the bus resynchronise, and the exchange finish with
//! every round acknowledged exactly once (tests/images/ping-pong, docs/bus.md).

use lichen_xen_tests::{boot, field, repo, Run};

/// The number after `key ` in the first line holding `marker`.
fn number(log: &str, marker: &str, key: &str) -> u64 {
    let value = field(log, marker, key).unwrap_or_else(|| panic!("no `{key}` in `{marker}`"));
    value
        .trim_end_matches([':', ';', ',', ')'])
        .parse()
        .unwrap_or_else(|_| panic!("`{key} {value}` in `{marker}` is not a number"))
}

/// The rounds both services are told to play (`rounds=N` in each command line).
fn rounds(manifest: &str) -> u64 {
    let counts: Vec<u64> = manifest
        .lines()
        .filter_map(|l| l.split("rounds=").nth(1))
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap())
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 2, "rounds=N in both command lines");
    assert_eq!(counts[0], counts[1], "both services play the same rounds");
    counts[0]
}

/// The lines of `run` holding `text`.
fn lines<'a>(run: &'a Run, text: &str) -> Vec<&'a str> {
    run.log.lines().filter(|l| l.contains(text)).collect()
}

#[test]
fn pong_is_killed_restarted_and_resynchronised_with_no_round_lost_or_repeated() {
    let manifest = std::fs::read_to_string(repo().join("xen/nodes/ping-pong.toml")).unwrap();
    let rounds = rounds(&manifest);
    let run = boot("ping-pong", &manifest, false, 900);
    let log = run.log.as_str();

    // The exchange ran, and the kill landed in the middle of it.
    run.assert_has("pong | ");
    run.assert_has("pong: acked 10 of");
    let killed = number(log, "pingpong-kill: destroyed pong (domain", "(domain");
    run.assert_has(&format!(
        "launcher: pong: its domain {killed} disappeared; restart 1"
    ));
    // ping saw pong go, at some round, and came back to the same round.
    let lost_at = number(log, "ping: pong lost (", "round");
    assert!(lost_at < rounds, "pong was killed after the last round");
    assert_eq!(
        number(
            log,
            "resynchronised with pong after outage 1",
            "acknowledges"
        ),
        lost_at,
        "after the resync ping's view acknowledges the round under way"
    );
    // Two lives of pong: the restarted one (its standby domain, prepared while the first ran,
    // when the manifest asks for one) joined at the round ping was at.
    let created = lines(&run, "launcher: pong: created domain").len();
    let took_over = lines(&run, "launcher: pong: standby domain")
        .iter()
        .filter(|l| l.contains("takes over"))
        .count();
    assert_eq!(created + took_over, 2, "two lives of pong");
    if manifest.contains("standby = true") {
        assert_eq!(took_over, 1, "the standby took over");
        // Its peers were pointed at it by their `peer-domid` alone (the full rewrite later).
        run.assert_has("xenstore entries of their peers diag, ping pointed at the new domains");
        run.assert_has("xenstore entries of diag, ping rewritten");
    }
    let joined = lines(&run, "synchronised with ping at round");
    assert_eq!(joined.len(), 2, "{joined:?}");
    let rejoined: u64 = joined[1]
        .split("at round ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no round in {}", joined[1]));
    assert_eq!(rejoined, lost_at);

    // ping: every acknowledgement, 1 to the last, exactly once, across one outage.
    let ping = "ping: verdict:";
    assert_eq!(field(log, ping, "verdict:"), Some("ok"), "ping's verdict");
    assert_eq!(number(log, ping, "first"), 1);
    assert_eq!(number(log, ping, "last"), rounds);
    assert_eq!(number(log, ping, "seen"), rounds);
    assert_eq!(number(log, ping, "gaps"), 0);
    assert_eq!(number(log, ping, "duplicates"), 0);
    assert_eq!(number(log, ping, "deletions"), 0);
    assert_eq!(number(log, ping, "published"), rounds);
    assert_eq!(number(log, ping, "outages"), 1);
    assert_eq!(number(log, ping, "resyncs"), 2, "one sync per connection");

    // pong: its second life saw every round from the one it joined at to the last, once each;
    // its first life was killed before a verdict.
    let pong = "pong: verdict:";
    assert_eq!(lines(&run, pong).len(), 1);
    assert_eq!(field(log, pong, "verdict:"), Some("ok"), "pong's verdict");
    assert_eq!(number(log, pong, "first"), lost_at);
    assert_eq!(number(log, pong, "last"), rounds);
    assert_eq!(number(log, pong, "seen"), rounds - lost_at + 1);
    assert_eq!(number(log, pong, "gaps"), 0);
    assert_eq!(number(log, pong, "duplicates"), 0);
    assert_eq!(number(log, pong, "deletions"), 0);

    // pong saw ping end its stream (ping closed its publication), not ping's domain go.
    run.assert_has("pong: ping is done");

    // diag followed both status topics over its own derived channels, the other status topics
    // (published by nobody here) stayed waiting, and it left once both were gone.
    let summaries = lines(&run, "diag: node summary at");
    assert!(
        summaries
            .iter()
            .any(|l| l.contains(": 2 of ") && l.contains(" status topics live")),
        "{summaries:?}"
    );
    run.assert_has("diag:   ping/Seq");
    run.assert_has("global: round ");
    run.assert_has("global: acknowledged round ");
    run.assert_has("diag: every publisher is gone: done");

    // No task waited on an event channel its domain had closed (Xen refuses such a poll).
    assert!(lines(&run, "SCHEDOP_poll failed").is_empty());

    // All three exited 0 and so did the node.
    run.assert_has("launcher: diag: exited successfully");
    run.assert_has("launcher: ping: exited successfully");
    run.assert_has("launcher: pong: exited successfully");
    run.assert_has("node `ping-pong` finished: no service failed");
    assert_eq!(run.status, Some(0));
}
