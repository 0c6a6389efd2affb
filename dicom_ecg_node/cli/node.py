"""``ecg-node serve``, ``ecg-node echo`` and ``ecg-node send``: the node itself and the admin's own SCU."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import click

from dicom_ecg_node.cli.common import handle_errors, node_options
from dicom_ecg_node.config import NodeConfig


def configure_logging(level: str) -> None:
    """Log to stderr with UTC timestamps; pynetdicom's own chatter only from WARNING up."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    logging.Formatter.converter = time.gmtime
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def _serve_overrides(func):  # type: ignore[no-untyped-def]
    """Collect serve's network flags into ``_config_overrides`` for :func:`node_options`."""
    import functools

    @click.option("--aet", default=None, help="The node's AE title (default ECGNODE).")
    @click.option("--host", default=None, help="Address to listen on (default 0.0.0.0).")
    @click.option("--port", type=int, default=None, help="DICOM port (default 11112).")
    @click.option("--max-pdu", type=int, default=None, help="Maximum PDU size received, bytes (0: unlimited).")
    @click.option("--max-associations", type=int, default=None, help="Simultaneous associations (default 32).")
    @click.option("--workers", type=int, default=None,
                  help="Receiving processes sharing the port (0: two per CPU core; default 1).")
    @click.option("--log-level", default=None, help="DEBUG, INFO, WARNING... (default INFO).")
    @click.option("--hl7-port", type=int, default=None,
                  help="HL7 v2 MLLP port for ADT and orders (default: no HL7 listener).")
    @click.option("--hl7-results-to", multiple=True,
                  help="HOST:PORT of an MLLP receiver of ORU^R01 results (repeatable).")
    @functools.wraps(func)
    def wrapper(*args, aet, host, port, max_pdu, max_associations, workers, log_level, hl7_port, hl7_results_to,
                **kwargs):  # type: ignore[no-untyped-def]
        kwargs["_config_overrides"] = {
            "aet": aet, "host": host, "port": port, "max_pdu": max_pdu,
            "max_associations": max_associations, "workers": workers, "log_level": log_level,
            "hl7_port": hl7_port, "hl7_results_to": tuple(hl7_results_to) or None,
        }
        return func(*args, **kwargs)

    return wrapper


def _security_overrides(func):  # type: ignore[no-untyped-def]
    """Collect serve's access-control, TLS, limit and audit flags into ``_config_overrides``."""
    import functools

    @click.option("--accept-unknown", is_flag=True, default=False,
                  help="Accept calling AE titles that are not registered, with every permission (set-up and demos "
                       "only; logged loudly). Default: refuse them.")
    @click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None,
                  help="PEM certificate (chain) of the node: with --tls-key and --tls-ca enables DICOM TLS.")
    @click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None,
                  help="PEM private key of the node.")
    @click.option("--tls-ca", type=click.Path(dir_okay=False, exists=True), default=None,
                  help="PEM CA bundle client certificates must chain to (mutual authentication).")
    @click.option("--tls-port", type=int, default=None, help="TLS port (default 2762).")
    @click.option("--no-plaintext", is_flag=True, default=False, help="Listen only with TLS.")
    @click.option("--max-object-size", type=int, default=None,
                  help="Largest C-STORE data set, bytes (0: unlimited; default 256 MiB).")
    @click.option("--max-associations-per-peer", type=int, default=None,
                  help="Simultaneous associations from one IP address (0: no limit; default 16).")
    @click.option("--syslog", default=None, help="Also send audit events to syslog: udp://HOST:PORT, tcp://HOST:PORT "
                                                 "or HOST:PORT (UDP), RFC 5424.")
    @functools.wraps(func)
    def wrapper(*args, accept_unknown, tls_cert, tls_key, tls_ca, tls_port, no_plaintext, max_object_size,  # type: ignore[no-untyped-def]
                max_associations_per_peer, syslog, **kwargs):
        kwargs.setdefault("_config_overrides", {}).update({
            # Flags given only when set: an absent flag must not override the file or the environment.
            "accept_unknown": True if accept_unknown else None, "plaintext": False if no_plaintext else None,
            "tls_cert": tls_cert, "tls_key": tls_key, "tls_ca": tls_ca, "tls_port": tls_port,
            "max_object_size": max_object_size, "max_associations_per_peer": max_associations_per_peer,
            "syslog": syslog,
        })
        return func(*args, **kwargs)

    return wrapper


def _web_overrides(func):  # type: ignore[no-untyped-def]
    """Collect serve's web viewer flags into ``_config_overrides``."""
    import functools

    @click.option("--http-port", type=int, default=None,
                  help="Also serve the web viewer on this port (HTTPS with --tls-cert/--tls-key).")
    @click.option("--http-host", default=None, help="Address of the web viewer (default 127.0.0.1).")
    @click.option("--http-open", is_flag=True, default=False,
                  help="Web viewer WITHOUT login, for demonstrations only (logged loudly, shown on every page).")
    @functools.wraps(func)
    def wrapper(*args, http_port, http_host, http_open, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("_config_overrides", {}).update({
            "http_port": http_port, "http_host": http_host, "http_open": True if http_open else None})
        return func(*args, **kwargs)

    return wrapper


@click.command()
@_serve_overrides
@_web_overrides
@_security_overrides
@node_options
@handle_errors
def serve(config: NodeConfig) -> None:
    """Run the DICOM node until SIGINT or SIGTERM.

    Accepts C-ECHO and C-STORE of every waveform storage SOP class and Encapsulated PDF; a C-STORE succeeds only
    once the file is fsynced in the archive and indexed in the catalog. On SIGINT/SIGTERM the node stops
    accepting, lets associations in flight finish, and exits.

    Only calling AE titles registered with 'ecg-node ae add' may connect, each with its permissions, unless
    --accept-unknown is given. Security events go to the audit trail in DATA_DIR/audit ('ecg-node audit').
    """
    from dicom_ecg_node.net.workers import run_node

    configure_logging(config.log_level)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("dicom_ecg_node").info("signal %d received: finishing associations in flight", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    run_node(config, stop)


@click.command()
@click.argument("host")
@click.argument("port", type=int)
@click.option("--aet", "called_aet", default="ECGNODE", show_default=True, help="Called AE title.")
@click.option("--calling-aet", default="ECGNODE-SCU", show_default=True, help="Our AE title.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds.")
@handle_errors
def echo(host: str, port: int, called_aet: str, calling_aet: str, timeout: float) -> None:
    """Send a C-ECHO to HOST PORT and print the status; exit non-zero unless it is Success."""
    from dicom_ecg_node.net.scu import echo as do_echo

    status = do_echo(host, port, called_aet=called_aet, calling_aet=calling_aet, timeout=timeout)
    click.echo(f"C-ECHO {called_aet}@{host}:{port}: status 0x{status:04X}")
    if status != 0:
        sys.exit(1)


@click.command()
@click.argument("host")
@click.argument("port", type=int)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--aet", "called_aet", default="ECGNODE", show_default=True, help="Called AE title.")
@click.option("--calling-aet", default="ECGNODE-SCU", show_default=True, help="Our AE title.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds.")
@handle_errors
def send(host: str, port: int, paths: tuple[str, ...], called_aet: str, calling_aet: str, timeout: float) -> None:
    """C-STORE FILE|DIR... to HOST PORT as stored on disk; folders are sent recursively.

    Prints one line per refused file and a summary; exits non-zero when any file was not accepted.
    """
    from pynetdicom import _config as pynetdicom_config

    from dicom_ecg_node.net.scu import iter_files
    from dicom_ecg_node.net.scu import send as do_send

    # Send each file's dataset bytes as stored, without decoding and re-encoding it (this CLI process only).
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True

    files = list(iter_files(paths))
    failed = 0
    with click.progressbar(length=len(files), label="sending", file=sys.stderr) as bar:

        def progress(result):  # type: ignore[no-untyped-def]
            nonlocal failed
            bar.update(1)
            if not result.ok:
                failed += 1
                status = "not sent" if result.status is None else f"0x{result.status:04X}"
                click.echo(f"\n{result.path}: {status} {result.comment}".rstrip(), err=True)

        do_send(host, port, (Path(f) for f in files), called_aet=called_aet, calling_aet=calling_aet,
                timeout=timeout, progress=progress)
    click.echo(f"sent {len(files) - failed} of {len(files)} files to {called_aet}@{host}:{port}"
               + (f", {failed} refused or not sent" if failed else ""))
    if failed:
        sys.exit(1)
