"""The failover to the Kiwoom backup (FAILOVER-KIWOOM), judged on the trace the KIS and Kiwoom
mocks share: KIS refused for a while, the backup after the reconnect budget, KIS probed on schedule,
then back on KIS. "Never two sockets, across brokers" is WS-SINGLE-SOCKET's (checks.sockets).
"""

from __future__ import annotations

from stockmon.conformance.errors import CheckFailure, HarnessError
from stockmon.conformance.evidence import Event, Evidence, Record, Socket
from stockmon.conformance.protocol import (
    KIWOOM,
    data_events,
    is_kiwoom,
    kis_sockets,
    kiwoom_sockets,
    registered_kiwoom,
    registered_on,
    served_pairs,
    slack,
    status_events,
    unserved_keys,
)
from stockmon.conformance.registry import Verdict, check, failed, passed
from stockmon.spec import Spec, broker_clause


def _refusal_faults(ev: Evidence) -> tuple[Record, Record | None]:
    """The KIS refuse_connections fault that killed KIS, and the one that restored it."""
    faults = [r for r in ev.faults("refuse_connections") if not is_kiwoom(r)]
    kill = next((r for r in faults if (r.get("params") or {}).get("on")), None)
    if kill is None:
        raise HarnessError("the scenario never made KIS refuse connections")
    restore = next(
        (
            r
            for r in faults
            if int(r["seq"]) > int(kill["seq"]) and not (r.get("params") or {}).get("on")
        ),
        None,
    )
    return kill, restore


def _kis_refusals(ev: Evidence, after: int, before: int | None = None) -> list[Record]:
    return [
        r
        for r in ev.records
        if r.get("kind") == "ws_refused"
        and not is_kiwoom(r)
        and int(r["seq"]) > after
        and (before is None or int(r["seq"]) < before)
    ]


def _first_backup(ev: Evidence, after: int) -> Socket | None:
    return next((s for s in kiwoom_sockets(ev) if int(s.open_record["seq"]) > after), None)


def _backup(ev: Evidence) -> tuple[Record, Record | None, Socket]:
    """The faults that killed and restored KIS, and the first Kiwoom socket after the kill."""
    kill, restore = _refusal_faults(ev)
    backup = _first_backup(ev, int(kill["seq"]))
    if backup is None:
        raise CheckFailure(
            "no Kiwoom socket after KIS went down", expected="the Kiwoom backup", evidence=[kill]
        )
    return kill, restore, backup


def _failover_value(spec: Spec, key: str) -> float:
    return broker_clause(spec, "FAILOVER-KIWOOM").number(key)


@check("FAILOVER-KIWOOM")
def failover_after_the_reconnect_budget(ev: Evidence) -> Verdict:
    """Kiwoom opens only after reconnect_budget KIS connection attempts failed since KIS went
    down, and then it does open."""
    budget = int(_failover_value(ev.spec, "reconnect_budget"))
    kill, _ = _refusal_faults(ev)
    backup = _first_backup(ev, int(kill["seq"]))
    if backup is None:
        return failed(
            f"no Kiwoom socket after KIS went down at {float(kill['t_spec']):.0f} s",
            expected=f"the Kiwoom backup after {budget} failed KIS reconnects",
            evidence=[kill, *_kis_refusals(ev, int(kill["seq"]))[:3]],
        )
    tries = _kis_refusals(ev, int(kill["seq"]), int(backup.open_record["seq"]))
    if len(tries) < budget:
        return failed(
            f"Kiwoom opened after {len(tries)} failed KIS reconnect(s); the budget is {budget}",
            expected=f"{budget} failed KIS reconnects before failing over",
            evidence=[kill, *tries, backup.open_record],
        )
    return passed(
        f"failed over {backup.open_t - float(kill['t_spec']):.0f} s after KIS went down, after "
        f"{len(tries)} failed reconnects (budget {budget})"
    )


@check("FAILOVER-KIWOOM")
def backup_serves_kr_and_reports_us(ev: Evidence) -> Verdict:
    """On the backup every KR subscription is registered again and its data printed, and every US
    subscription Kiwoom cannot serve is reported by a status event naming its key."""
    kill, restore, backup = _backup(ev)
    wanted = served_pairs(ev)
    got = registered_kiwoom(ev, backup.conn)
    if not wanted <= got:
        return failed(
            f"{backup.conn} registered {sorted(got)}, not every KR subscription {sorted(wanted)}",
            expected="every subscription Kiwoom serves registered again on the backup",
            evidence=[backup.open_record, *ev.client_texts(backup.conn)[:4]],
        )
    t_kill = float(kill["t_spec"])
    t_back = float(restore["t_spec"]) if restore is not None else ev.end_t_spec
    data = [e for e in data_events(ev) if e.data.get("source") == KIWOOM and e.t_spec >= t_kill]
    if not data:
        return failed(
            "no Kiwoom data event after the failover", expected="the KR data from the backup"
        )
    missing = [k for k in sorted(unserved_keys(ev)) if not _reported(ev, k, t_kill, t_back)]
    if missing:
        return failed(
            "no status event for the subscriptions Kiwoom cannot serve: " + ", ".join(missing),
            expected="a status event naming each key the backup does not carry (e.g. US keys)",
        )
    return passed(
        f"{len(wanted)} KR subscriptions on {backup.conn}, {len(data)} Kiwoom events, "
        f"{len(unserved_keys(ev))} unserved key(s) reported"
    )


def _reported(ev: Evidence, key: str, since: float, until: float) -> bool:
    """Whether a status event printed while KIS was down names ``key``."""

    def mentions(e: Event) -> bool:
        return any(isinstance(v, str) and key in v for v in e.data.values())

    return any(since <= e.t_spec <= until and mentions(e) for e in status_events(ev))


@check("FAILOVER-KIWOOM")
def switches_back_to_kis(ev: Evidence) -> Verdict:
    """Once KIS answers again the client returns within probe_interval_s: a KIS socket registers
    every subscription again and the Kiwoom socket is closed."""
    _, restore = _refusal_faults(ev)
    if restore is None:
        raise HarnessError("the scenario never let KIS answer again")
    interval = _failover_value(ev.spec, "probe_interval_s")
    t_restore = float(restore["t_spec"])
    wanted = set(ev.subscriptions)
    back = next(
        (
            s
            for s in kis_sockets(ev)
            if int(s.open_record["seq"]) > int(restore["seq"])
            and wanted <= registered_on(ev, s.conn)
        ),
        None,
    )
    if back is None:
        return failed(
            f"no KIS socket with every subscription after KIS answered again at {t_restore:.0f} s",
            expected=f"back on KIS within {interval:g} s (probe_interval_s)",
            evidence=[restore],
        )
    late = back.open_t - t_restore
    if late > interval + slack(ev):
        return failed(
            f"back on KIS {late:.0f} s after it answered again",
            expected=f"a probe at least every {interval:g} s",
            evidence=[restore, back.open_record],
        )
    stuck = [s for s in kiwoom_sockets(ev) if s.open_t <= back.open_t and s.close_t is None]
    if stuck:
        return failed(
            f"{stuck[0].conn} stayed open after the switch back",
            expected="the Kiwoom socket closed when KIS streams again",
            evidence=[stuck[0].open_record, back.open_record],
        )
    return passed(f"back on KIS ({back.conn}) {late:.0f} s after it answered again")


@check("FAILOVER-KIWOOM")
def kis_probed_on_schedule(ev: Evidence) -> Verdict:
    """While on the backup, KIS is tried again every probe_interval_s: never more often (a
    probe costs the backup its socket), never forgotten."""
    interval = _failover_value(ev.spec, "probe_interval_s")
    attempts = int(_failover_value(ev.spec, "probe_attempts"))
    _, restore, backup = _backup(ev)
    end_seq = int(restore["seq"]) if restore is not None else None
    end_t = float(restore["t_spec"]) if restore is not None else ev.end_t_spec
    tries = _kis_refusals(ev, int(backup.open_record["seq"]), end_seq)
    tol = slack(ev)
    probes: list[list[Record]] = []
    for r in tries:
        if probes and float(r["t_spec"]) - float(probes[-1][-1]["t_spec"]) < tol:
            probes[-1].append(r)
        else:
            probes.append([r])
    last = backup.open_t
    for group in probes:
        t = float(group[0]["t_spec"])
        if t - last < interval - tol:
            return failed(
                f"KIS tried {t - last:.0f} s after the previous probe (or the failover)",
                expected=f"a probe every {interval:g} s (probe_interval_s), no more often",
                evidence=group[:2],
            )
        if len(group) > attempts:
            return failed(
                f"{len(group)} KIS attempts in one probe",
                expected=f"at most {attempts} (probe_attempts)",
                evidence=group[:3],
            )
        last = t
    if end_t - last > interval + tol:
        return failed(
            f"no KIS probe for {end_t - last:.0f} s on the backup",
            expected=f"a probe every {interval:g} s (probe_interval_s)",
            evidence=[backup.open_record],
        )
    return passed(f"{len(probes)} probe(s) of KIS on the backup, {interval:g} s apart")
