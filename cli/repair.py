"""`mfstore verify`, `repair` and `gc`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli import options
from cli.context import workspace
from cli.errors import DAMAGE_EXIT_CODE, call_of
from cli.fixes import Call, render_error, render_fix
from cli.render import TrainingProgress, print_json, record_dict, stderr, stdout
from cli.tracking import MLflow, reach, track_layers
from mfstore.errors import MFStoreError

if TYPE_CHECKING:
    from mfstore.integrity import LayerCheck, VerifyReport

Tolerance = Annotated[float, typer.Option(
    help="Accuracy drop (fraction, 0.02 = 2 points) that counts as damage.")]


def _why(err: MFStoreError, call: Call) -> str:
    """An error's one line without its `error: `, fixes said for this command line."""
    return render_error(err, call).removeprefix("error: ")


def _fixes(fixes: list, call: Call) -> str:
    return " or ".join(render_fix(f, call) for f in fixes)


def _report_dict(report: VerifyReport, call: Call) -> dict:
    return {"network": report.network.ref if report.network else None,
            "dataset": report.dataset, "damaged": len(report.damaged),
            "damaged_streams": len(report.damaged_streams),
            "layers": [{"layer": c.layer.ref, "position": c.position, "ok": c.ok,
                        "problems": c.problems, "accuracy": c.accuracy,
                        "recorded_accuracy": c.recorded, "note": c.note,
                        "repaired_by": c.repaired_by, "repair": _fixes(c.fixes, call)}
                       for c in report.checks],
            "streams": [{"id": s.id, "dataset": s.dataset, "chain": s.chain, "ok": s.ok,
                         "problems": s.problems, "repair": _fixes(s.fixes, call)}
                        for s in report.streams],
            "damaged_networks": len(report.damaged_networks),
            "networks": [{"network": n.network.ref, "ok": not n.needs_mending,
                          "problems": n.problems, "repaired_by": n.repaired_by,
                          "aliases": n.aliases, "repair": _fixes(n.fixes, call)}
                         for n in report.networks]}


def _print_layer(c: LayerCheck, call: Call) -> None:
    where = f"layer {c.position} " if c.position else ""
    acc = "" if c.accuracy is None else (
        f"  test accuracy {c.accuracy:.2%} (recorded {c.recorded:.2%})")
    state = "ok     " if c.ok else ("REPAIRED" if c.repaired_by else "DAMAGED")
    stdout.print(f"{state} {where}{c.layer.ref}{acc}" + (f"  [{c.note}]" if c.note else "")
                 + (f"  (by {c.repaired_by})" if c.repaired_by else ""), highlight=False)
    for problem in c.problems:
        stdout.print(f"        {problem}", highlight=False)
    if c.fixes:
        stdout.print(f"        repair: {_fixes(c.fixes, call)}", highlight=False)


def _print_report(report: VerifyReport, call: Call) -> None:
    for c in report.checks:
        _print_layer(c, call)
    for st in report.streams:
        chain = " → ".join(st.chain) or "its examples"
        stdout.print(f"{'ok     ' if st.ok else 'DAMAGED'} stream {st.id[:12]} of "
                     f"{st.dataset} through {chain}", highlight=False)
        for problem in st.problems:
            stdout.print(f"        {problem}", highlight=False)
        if st.fixes:
            stdout.print(f"        repair: {_fixes(st.fixes, call)}", highlight=False)
    for n in report.networks:
        state = "DAMAGED" if n.needs_mending else "REPAIRED"
        named = f" (named by {', '.join(n.network.name + '@' + a for a in n.aliases)})" \
            if n.aliases else ""
        stdout.print(f"{state} network {n.network.ref}{named}"
                     + (f"  (by {n.repaired_by})" if n.repaired_by else ""), highlight=False)
        for problem in n.problems:
            stdout.print(f"        {problem}", highlight=False)
        if n.fixes:
            stdout.print(f"        repair: {_fixes(n.fixes, call)}", highlight=False)
    damaged = [f"{len(report.damaged)} layers", f"{len(report.damaged_streams)} streams"]
    if report.network is None:  # the whole store: its networks too
        damaged.append(f"{len(report.damaged_networks)} networks")
    stdout.print(f"{len(report.checks)} layers and {len(report.streams)} streams checked, "
                 f"{', '.join(damaged[:-1])} and {damaged[-1]} damaged")


def verify(
    ctx: typer.Context,
    ref: Annotated[str | None, typer.Argument(
        help="NET, NET@VERSION or NET@ALIAS; the whole store when omitted.")] = None,
    data: Annotated[str | None, typer.Option(
        help="Also compare each layer's accuracy on this dataset with the recorded one.")] = None,
    tolerance: Tolerance = 0.02,
    streams: Annotated[bool, typer.Option(
        help="Check the streams too (every shard's sha256: reads every byte).")] = True,
    device: options.Device = "auto",
    as_json: options.Json = False,
) -> None:
    """Check every block (readable, sha256 unchanged, finite) and every stream the network
    depends on (manifest, every shard's sha256); with --data, each layer's accuracy too.
    Damaged layers and streams are marked; the exit status is 8 when anything is damaged.

    Example: mfstore verify digits-mlp@1 --data digits
    """
    # start-up: torch only when this command runs
    from mfstore.verify import verify as verify_blocks

    report = verify_blocks(workspace(ctx), ref, data, tolerance, device, streams)
    if as_json:
        print_json(_report_dict(report, call_of(ctx)))
    else:
        _print_report(report, call_of(ctx))
    if not report.ok:
        raise typer.Exit(DAMAGE_EXIT_CODE)


def repair(
    ctx: typer.Context,
    ref: Annotated[str | None, typer.Argument(
        help="NET, NET@VERSION or NET@ALIAS; with --auto and no NET, the whole store.")] = None,
    layer: Annotated[int | None, typer.Option(help="Position of the layer to retrain.")] = None,
    auto: Annotated[bool, typer.Option(
        help="Repair every layer and stream verify finds damaged.")] = False,
    tolerance: Tolerance = 0.02,
    device: Annotated[str | None, typer.Option(
        help="Override the recorded device (cpu reproduces CPU-trained layers exactly).")] = None,
    as_json: options.Json = False,
    mlflow: MLflow = None,
) -> None:
    """Retrain only the damaged layer with its recorded spec, config and seed on its intact
    upstream stream, and register the repaired network; rebuild damaged streams (derived ones
    from their upstream blocks, a dataset's own from its recorded source).

    Example: mfstore repair digits-mlp@1 --layer 2
    Example: mfstore repair --auto
    """
    # start-up: torch only when this command runs
    from mfstore.repair import plan_repair

    job = plan_repair(workspace(ctx), ref, layer, auto, tolerance, device)
    reach(mlflow, job.ctx)
    with TrainingProgress(enabled=not as_json) as progress:
        result = job.run(progress)
    track_layers(ctx, mlflow, [r.new for r in result.repaired] + result.retrained_downstream)
    if as_json:
        print_json({"network": None if result.network is None else record_dict(result.network),
                    "networks": [n.ref for n in result.networks],
                    "repaired": [{"old": r.old.ref, "new": r.new.ref, "identical": r.identical}
                                 for r in result.repaired],
                    "retrained_downstream": [v.ref for v in result.retrained_downstream],
                    "kept_downstream": result.kept_downstream, "streams": result.streams,
                    "left": {k: _why(v, call_of(ctx)) for k, v in result.left.items()}})
        if result.left:  # as without --json: something was not mended
            raise typer.Exit(DAMAGE_EXIT_CODE)
        return
    if result.nothing:
        stdout.print("nothing to repair")
        return
    for sid in result.streams:
        stdout.print(f"rebuilt stream {sid[:12]}")
    for r in result.repaired:
        same = "bit-identical tensors" if r.identical else "different tensors"
        stdout.print(f"repaired {r.old.ref} → {r.new.ref} ({same}): test accuracy "
                     f"{r.new.metrics['test_accuracy']:.2%}")
    for v in result.retrained_downstream:
        stdout.print(f"retrained downstream {v.ref}")
    for network in result.networks:
        stdout.print(f"registered {network.ref}")
    for what, why in result.left.items():
        stderr.print(f"not repaired: {what}: {_why(why, call_of(ctx))}", highlight=False)
    if result.left:
        raise typer.Exit(DAMAGE_EXIT_CODE)


def gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option(help="List what would go; remove nothing.")] = False,
    grace: Annotated[float, typer.Option(
        help="Keep files younger than this many seconds (writes in progress).")] = 600,
    force: Annotated[bool, typer.Option(
        help="Collect even when the registry is empty but the store is not.")] = False,
    as_json: options.Json = False,
) -> None:
    """Remove blocks and streams that nothing live references, streams marked damaged, and
    stale shards; never what a live layer's lineage or a live network needs.

    Example: mfstore gc --dry-run
    """
    from mfstore.gc import collect  # start-up: SQLAlchemy only when a command opens the registry

    out = collect(workspace(ctx), dry_run, grace, force)
    if as_json:
        print_json({"dry_run": dry_run, "bytes": out.bytes, "blocks": out.blocks,
                    "streams": out.streams, "temporary": out.temporary})
        return
    verb = "would free" if dry_run else "freed"
    for path, size in out.blocks + out.temporary:
        stdout.print(f"  {path}  {size} bytes", highlight=False)
    for sid, size in out.streams:
        stdout.print(f"  stream {sid[:12]}  {size} bytes", highlight=False)
    stdout.print(f"{verb} {out.bytes} bytes: {len(out.blocks)} blocks, {len(out.streams)} "
                 f"streams, {len(out.temporary)} temporary files")


