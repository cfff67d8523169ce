"""`mycelium bft exec`: run an operation redundantly with commit-reveal and show the verdict.

The executors here run in this process (bftconsensus's real cores, driven by its in-process
runner), some of them deliberately faulty, so an operator can see what a verdict, its evidence
and the trust ledger look like before the network runs them across nodes. With ``--globaldb`` the
resulting trust scores are written to the Global DB, where the dashboard reads them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from typing import Any

import anyio

import bftconsensus as bc
from mycelium._errors import CLIError

FUNCTIONS: dict[str, Callable[[bytes], bytes]] = {
    "sha256": lambda data: hashlib.sha256(data).digest(),
    "blake2b": lambda data: hashlib.blake2b(data).digest(),
    "reverse": lambda data: data[::-1],
    "upper": lambda data: data.upper(),
}


class _Liar(bc.Executor):
    """A faulty executor: always returns a wrong result."""

    def compute(self, function: str, data: bytes) -> bytes:
        return b"wrong:" + data[:16]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    bft = sub.add_parser("bft", help="redundant execution with commit-reveal")
    bft_sub = bft.add_subparsers(dest="bft_command", metavar="COMMAND", required=True)
    e = bft_sub.add_parser("exec", help="execute a function redundantly and print the verdict")
    e.add_argument("--function", default="sha256", choices=sorted(FUNCTIONS))
    e.add_argument("--input", default="hello mycelium", help="the operation's input (text)")
    e.add_argument("--executors", type=int, default=5, help="how many executors (default 5)")
    e.add_argument("--faulty", type=int, default=1, help="how many of them lie (default 1)")
    e.add_argument("--silent", type=int, default=0, help="how many never answer (default 0)")
    e.add_argument("--rule", choices=["majority", "2f+1"], default="majority")
    e.add_argument("--ops", type=int, default=1, help="run this many operations to watch trust move")
    e.add_argument("--globaldb", default="", help="write trust scores here (sqlite:PATH or etcd://H:P)")
    e.add_argument("--network-id", default="local", help="the network whose trust scores to write")
    e.set_defaults(func=_cmd_exec)


def _cmd_exec(args: argparse.Namespace) -> int:
    if args.executors < 1:
        raise CLIError(f"--executors {args.executors}: need at least 1")
    if not 0 <= args.faulty + args.silent <= args.executors:
        raise CLIError(
            f"--faulty {args.faulty} --silent {args.silent}: must fit in --executors {args.executors}"
        )
    if args.ops < 1:
        raise CLIError(f"--ops {args.ops}: need at least 1")
    names = [f"exec{i}" for i in range(args.executors)]
    signers = {n: bc.Ed25519Signer.generate(n) for n in [*names, "coordinator", "client"]}
    keys = {n: s.public_key for n, s in signers.items()}
    functions = {args.function: FUNCTIONS[args.function]}
    executors = [
        (_Liar if i < args.faulty else bc.Executor)(signers[n], keys, functions) for i, n in enumerate(names)
    ]
    silent = frozenset(names[args.faulty : args.faulty + args.silent])
    rule = bc.MajorityRule.STRICT_MAJORITY if args.rule == "majority" else bc.MajorityRule.TWO_F_PLUS_ONE
    config = bc.QuorumConfig(base_quorum=min(3, args.executors), rule=rule)
    ledger = bc.TrustLedger()
    verdicts = []
    for n in range(args.ops):
        data = args.input.encode() if args.ops == 1 else f"{args.input} #{n}".encode()
        op = bc.sign_operation(signers["client"], f"op-{n}", args.function, data)
        weights = dict(ledger.eligible([e.signer.node_id for e in executors]))
        verdict = bc.execute_in_process(
            signers["coordinator"],
            keys,
            op,
            [e for e in executors if e.signer.node_id in weights],
            beacon=b"mycelium-cli",
            weights=weights,
            config=config,
            silent=silent,
        )
        checked = bc.verify_verdict(verdict.frame, keys)
        ledger.apply(checked)
        verdicts.append(checked)
    last = verdicts[-1]
    ranking = [
        {"node": node, "trust": trust / 1e6, "status": ledger.status(node).value}
        for node, trust in ledger.ranking()
    ]
    if args.globaldb:
        anyio.run(_store_trust, args.globaldb, args.network_id, ranking)
    evidence = [e.kind.name.lower() for e in last.evidence]
    doc = {
        "operation": last.op_id,
        "function": last.function,
        "accepted": last.accepted,
        "result": last.result.hex() if last.result is not None else None,
        "agreeing": list(last.agreeing),
        "dissenting": list(last.dissenting),
        "evidence": evidence,
        "attempts": last.attempts,
        "trust": ranking,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0 if last.accepted else 1
    state = "ACCEPTED" if last.accepted else "NO MAJORITY"
    print(f"{last.op_id} {last.function}: {state} after {last.attempts} attempt(s)")
    if last.result is not None:
        print(f"  result     {last.result.hex()}")
    print(f"  agreeing   {', '.join(last.agreeing) or '-'}")
    print(f"  dissenting {', '.join(last.dissenting) or '-'}")
    print(f"  evidence   {', '.join(evidence) or '-'}  (signed; re-verified from the messages)")
    print("  trust after", args.ops, "operation(s):")
    for r in ranking:
        print(f"    {r['node']:<12} {r['trust']:.3f}  {r['status']}")
    return 0 if last.accepted else 1


async def _store_trust(url: str, network_id: str, ranking: list[dict[str, Any]]) -> None:
    import time

    from mycelium.globaldb import GlobalDBError, NetworkDB, TrustScore
    from mycelium.node._registry import open_store

    try:
        async with open_store(url) as store:
            db = NetworkDB(store, network_id)
            for r in ranking:
                score = max(0.0, min(1.0, float(r["trust"])))
                await db.trust.put(TrustScore(node_id=r["node"], score=score, updated_at=time.time()))
    except GlobalDBError as exc:
        raise CLIError(f"could not write trust scores to {url}: {exc}") from None
