"""`mfstore serve`: the v2 inference server (REST, and gRPC on request)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from cli.context import locations
from cli.options import given_token


def serve(
    ctx: typer.Context,
    networks: Annotated[list[str] | None, typer.Argument(
        help="NET, NET@VERSION or NET@ALIAS to serve (besides --model-repo); an alias is "
             "followed: when it moves, the server switches to its new version.")] = None,
    model_repo: Annotated[str | None, typer.Option(
        help="Triton-layout repository: <repo>/<name>/config.pbtxt, "
             "<repo>/<name>/<version>/model.onnx.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="REST port (0: any free port).")] = 8000,
    grpc_port: Annotated[int | None, typer.Option(
        help="Also serve Triton's gRPC protocol on this port (0: any free port).")] = None,
    device: Annotated[str, typer.Option(
        help="auto (CUDA when present), cpu, cuda or cuda:N.")] = "auto",
    require_gpu: Annotated[bool, typer.Option(help="Refuse to start without CUDA.")] = False,
    tf32: Annotated[bool, typer.Option(help="Allow TF32 on CUDA (faster, ~5e-4 rel. error).")
    ] = False,
    threads: Annotated[int | None, typer.Option(
        help="ONNX Runtime intra-op threads per model (default: cores, at most 4).")] = None,
    token: Annotated[str | None, typer.Option(
        envvar="MFSTORE_TOKEN", help="Require `Authorization: Bearer TOKEN`.")] = None,
    max_request_mb: Annotated[float, typer.Option(help="Largest request body.")] = 64.0,
    batching: Annotated[bool | None, typer.Option(
        "--batching/--no-batching",
        help="Dynamic batching on or off for every model (default: as its config.pbtxt "
             "says).")] = None,
    max_batch_size: Annotated[int | None, typer.Option(
        help="Largest batch, overriding each config.pbtxt's max_batch_size.")] = None,
    max_queue_delay_us: Annotated[int | None, typer.Option(
        help="How long a batch may wait for more requests, overriding "
             "max_queue_delay_microseconds.")] = None,
    poll_seconds: Annotated[float, typer.Option(
        help="Look for new versions (repository folders, moved aliases) this often; "
             "0: never.")] = 10.0,
    header_timeout: Annotated[float, typer.Option(
        help="Close a REST connection whose request headers are not complete within this "
             "many seconds (slow clients).")] = 30.0,
    workers: Annotated[int, typer.Option(
        help="Server processes sharing the port(s), each with its own models (statistics "
             "and repository control span them all).")] = 1,
) -> None:
    """Serve models over the KServe / Triton v2 protocol with ONNX Runtime: inference,
    metadata, config, statistics, the repository API and /metrics.

    Example: mfstore serve --model-repo ./triton --port 8000 --grpc-port 8001
    """
    # start-up: onnxruntime, grpc only when this command runs
    from serving.launch import Listen, ServeSpec, build_server, request_limit, run

    # start-up: onnxruntime, grpc only when this command runs
    from serving.launch import serve as serve_models

    # start-up: grpc, tritonclient only when this command runs
    from serving.model_config import BatchingOptions
    from serving.sessions import RuntimeOptions  # start-up: onnxruntime only when this command runs

    # start-up: onnxruntime, grpc only when this command runs
    from serving.workers import check_workers, serve_workers

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    check_workers(workers)
    where = locations(ctx)
    spec = ServeSpec(
        Listen(host, port, grpc_port, poll_seconds, header_timeout), model_repo,
        tuple(networks or ()),
        (where.home, where.registry, where.store),
        RuntimeOptions(device, threads, tf32, require_gpu),
        BatchingOptions(batching, max_batch_size, max_queue_delay_us),
        given_token(token, "MFSTORE_TOKEN"), request_limit(max_request_mb))

    def announce(url: str, grpc_address: str | None) -> None:
        typer.echo(f"listening on {url}/v2" + (f", gRPC on {grpc_address}" if grpc_address
                                                 else ""), err=True)

    try:
        if workers == 1:
            run(serve_models(build_server(spec), spec.listen, announce))
        else:
            serve_workers(spec, workers, announce)
    except KeyboardInterrupt:  # Ctrl-C while the models load: nothing to finish
        raise typer.Exit(130) from None
