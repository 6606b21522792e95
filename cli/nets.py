"""`mfstore nets list|show` and `mfstore eval`."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import options
from cli.context import workspace
from cli.render import (
    network_accuracy_table,
    print_json,
    record_dict,
    records_table,
    stdout,
)

app = typer.Typer(help="Inspect, alias, graph and delete networks.", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, as_json: options.Json = False) -> None:
    """List network versions.

    Example: mfstore nets list --json
    """
    networks = workspace(ctx).registry.networks()
    if as_json:
        print_json([record_dict(n) for n in networks])
        return
    stdout.print(records_table("networks", ["network", "layers", "mode", "dataset", "note"], [
        [n.ref, " → ".join(f"{a}@{v}" for a, v in n.layers), n.mode, n.dataset, n.note]
        for n in networks]))


@app.command("show")
def show(ctx: typer.Context,
         ref: Annotated[str, typer.Argument(help="NET, NET@VERSION or NET@ALIAS.")],
         as_json: options.Json = False) -> None:
    """Show one network version and its layers.

    Example: mfstore nets show digits-mlp@1
    """

    ws = workspace(ctx)
    network = ws.registry.resolve_network(ref)
    layers = ws.registry.network_layers(network)
    if as_json:  # the histories are in the blocks: only --json reads the store
        print_json({**record_dict(network), "layer_versions": [
            {**record_dict(v), "history": ws.read_block(v).history} for v in layers]})
        return
    stdout.print(f"{network.ref}  mode {network.mode}  dataset {network.dataset}  "
                 f"{network.note}")
    for k, v in enumerate(layers, 1):
        stdout.print(f"  {k}. {v.ref:20} {v.spec.kind}:{v.spec.width} → {v.spec.out_shape}  "
                     f"test acc {v.metrics.get('test_accuracy', float('nan')):.2%}  "
                     f"block {v.block_sha256[:12]}  {v.status}")


@app.command("alias")
def alias(ctx: typer.Context,
          ref: Annotated[str, typer.Argument(help="NET@VERSION")],
          name: Annotated[str, typer.Argument(help="Alias, e.g. prod.")]) -> None:
    """Point an alias at a network version; NET@ALIAS then works wherever NET@N does.

    Example: mfstore nets alias digits-mlp@2 prod
    """

    ws = workspace(ctx)
    network = ws.registry.resolve_network(ref)
    ws.registry.set_alias("network", network.name, name, network.version)
    stdout.print(f"{network.name}@{name} → {network.ref}")


@app.command("delete")
def delete(ctx: typer.Context,
           ref: Annotated[str, typer.Argument(help="NET@VERSION, or NET for every version.")],
           keep_layers: Annotated[bool, typer.Option(
               help="Keep the layer versions only this network uses.")] = False) -> None:
    """Delete a network, and the layer versions nothing else live needs (a layer that another
    network holds, or that a live layer was trained over, is kept and the reason shown);
    `mfstore gc` then frees their blocks and streams.

    Example: mfstore nets delete digits-mlp@1
    """
    # start-up: SQLAlchemy only when a command opens the registry
    from mfstore.deletion import delete_network

    result = delete_network(workspace(ctx), ref, keep_layers)
    for network in result.networks:
        stdout.print(f"deleted network {network.ref}")
    for layer in result.layers:
        stdout.print(f"deleted layer {layer.ref}")
    for kept, why in result.kept.items():
        stdout.print(f"kept layer {kept}: {why}", highlight=False)


@app.command("graph")
def graph(ctx: typer.Context,
          ref: Annotated[str, typer.Argument(help="NET, NET@VERSION or NET@ALIAS.")],
          fmt: Annotated[str, typer.Option("--format", help="dot (Graphviz) or mermaid.")
                         ] = "dot") -> None:
    """Print the lineage graph of a network: its dataset, its layers in order, and what each
    layer was trained on where that differs.

    Example: mfstore nets graph digits-mlp@1 --format mermaid
    """
    # start-up: SQLAlchemy only when a command opens the registry
    from mfstore.lineage_graph import network_graph, to_dot, to_mermaid

    writers = {"dot": to_dot, "mermaid": to_mermaid}
    if fmt not in writers:
        raise typer.BadParameter(f"unknown format {fmt!r}; choose dot or mermaid",
                                 param_hint="--format")
    ws = workspace(ctx)
    stdout.out(writers[fmt](network_graph(ws.registry, ws.registry.resolve_network(ref))),
               highlight=False, end="")


def evaluate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NET, NET@VERSION or NET@ALIAS.")],
    data: Annotated[str | None, typer.Option(
        help="Registered dataset (default: the network's).")] = None,
    upto: Annotated[int | None, typer.Option(
        help="Use only the first K layers (degraded mode: later layers are not loaded).")
    ] = None,
    device: options.Device = "auto",
    as_json: options.Json = False,
) -> None:
    """Test accuracy of every layer on its own, of FF mode and of BP mode.

    Example: mfstore eval digits-mlp@1 --data digits --upto 1
    """
    from mfstore.network import evaluate_network  # start-up: torch only when this command runs

    ws = workspace(ctx)
    network, accuracy = evaluate_network(ws, ref, data, upto, device=device)
    if as_json:
        print_json({"network": network.ref, "upto": upto, **accuracy.to_dict()})
        return
    refs = [f"{a}@{v}" for a, v in network.layers][:len(accuracy.per_layer)]
    stdout.print(network_accuracy_table(f"{network.ref} on {data or network.dataset}", refs,
                                        accuracy))
