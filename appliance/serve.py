"""`ntg-edge serve`: run the appliance (appliance/server.py) under uvicorn.

Everything is loaded and checked before the port is bound, so a bad config, a tampered bundle or classifier, or an
interface that cannot be opened stops the command with one line naming the file or setting (exit 1). SIGTERM (and
Ctrl-C) drain: no new connections, streams end with a StreamEnd line, in-flight requests get `server.drain_seconds`
to finish, then the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType

import click


def _server_class():
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's Server, plus: the appliance hears the signal (streams end cleanly), and a SIGTERM that was
        drained exits 0 instead of being re-raised at the end (uvicorn's default ends the process by the signal)."""

        def __init__(self, config: uvicorn.Config, appliance) -> None:
            super().__init__(config)
            self._appliance = appliance

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self._appliance.draining.set()
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM:
                self._captured_signals.remove(sig)

    return DrainingServer


@click.command("serve")
@click.option("--bundle", type=click.Path(file_okay=False), help="Generator bundle (overrides the config's).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="appliance.yaml (deploy/appliance.example.yaml documents every key).")
@click.option("--host", help="Address to bind (default 127.0.0.1; others need a token).")
@click.option("--port", type=int, help="TCP port (default 8080).")
@click.option("--capture", "interface", help="Classify live traffic on this interface.")
@click.option("--bpf", help="BPF filter for --capture, e.g. 'tcp or udp port 53'.")
@click.option("--train-flows", type=click.Path(exists=True, dir_okay=False),
              help="Labelled flows file to train the classifier from when none is stored yet.")
@click.option("--classifier", "classifier_path", type=click.Path(file_okay=False),
              help="Classifier directory (default: $STATE_DIRECTORY/classifier or ./classifier).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(bundle, config_path, host, port, interface, bpf, train_flows, classifier_path, log_level) -> None:
    """Serve a bundle: generate and stream synthetic flows, classify flows, augment the classifier, watch live
    traffic; an HTTP API (OpenAPI at /docs), Prometheus metrics at /v1/metrics and a status page at /."""
    import uvicorn

    from ..runtime.bundle import BundleError
    from ..runtime.pcap import CaptureError
    from .classifier import ClassifierError
    from .config import load_config
    from .server import Appliance, create_app

    overrides: dict = {}
    flat = {("server", "host"): host, ("server", "port"): port, ("capture", "interface"): interface,
            ("capture", "bpf"): bpf, ("classifier", "train_flows"): train_flows,
            ("classifier", "path"): classifier_path}
    for (section, key), value in flat.items():
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    if bundle is not None:
        overrides["bundle"] = bundle
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    log = logging.getLogger("ntg_edge.appliance")
    try:
        cfg = load_config(config_path, overrides)
        cfg.check_exposure()
        appliance = Appliance(cfg, log=log.info)
    except (BundleError, ClassifierError, CaptureError, ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    app = create_app(appliance)
    if appliance.live is not None:
        try:  # open the interface now, so a bad one stops the command before it serves
            appliance.live.start()
        except (CaptureError, ValueError) as e:
            raise click.ClickException(str(e)) from None
    config = uvicorn.Config(app, host=cfg.server.host, port=cfg.server.port, log_level=log_level,
                            timeout_graceful_shutdown=cfg.server.drain_seconds, lifespan="on")
    server = _server_class()(config, appliance)
    log.info("bundle %s (%s), classifier %s", Path(cfg.bundle), ", ".join(appliance.classes),
             f"v{appliance.classifier.version}" if appliance.classifier else "none yet")
    server.run()


if __name__ == "__main__":
    serve()
