"""`mfstore serve`: the v2 inference server."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from cli.context import workspace
from cli.render import stderr


def serve(
    ctx: typer.Context,
    networks: Annotated[list[str] | None, typer.Argument(
        help="NET or NET@VERSION to export and serve (besides --model-repo).")] = None,
    model_repo: Annotated[str | None, typer.Option(
        help="Triton-layout repository: <repo>/<name>/<version>/model.onnx.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    require_gpu: Annotated[bool, typer.Option(help="Refuse to start without CUDA.")] = False,
    tf32: Annotated[bool, typer.Option(help="Allow TF32 on CUDA (faster, ~5e-4 rel. error).")
    ] = False,
    threads: Annotated[int | None, typer.Option(
        help="ONNX Runtime intra-op threads per model (default: cores, at most 4).")] = None,
    token: Annotated[str | None, typer.Option(
        envvar="MFSTORE_TOKEN", help="Require `Authorization: Bearer TOKEN`.")] = None,
    max_request_mb: Annotated[float, typer.Option(help="Largest request body.")] = 64.0,
) -> None:
    """Serve models over the KServe / Triton v2 REST protocol with ONNX Runtime.

    Example: mfstore serve --model-repo ./triton --port 8000
    """
    import uvicorn

    from mfstore.export import build_export
    from serving.app import create_app
    from serving.models import load_models

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    exported = []
    if networks:
        ws = workspace(ctx)
        for ref in networks:
            export = build_export(ws, ref)
            exported.append((export.network.name, export.network.version, export.data))
    models = load_models(model_repo, exported, device, threads, tf32, require_gpu)
    stderr.print(f"listening on http://{host}:{port}/v2")
    app = create_app(models, token, int(max_request_mb * (1 << 20)))
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
