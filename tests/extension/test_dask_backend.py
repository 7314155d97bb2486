"""DaskBackend on its own: what it listens on, and its stop (with no Jupyter server around it)."""

import asyncio
import socket
import urllib.error
import urllib.request

import psutil
import pytest

from server_ext.extension.dask_backend import DaskBackend
from server_ext.extension.errors import ServerStopping


def _status(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _listening() -> set:
    """(pid, address) of every listening socket of this process and its children."""
    me = psutil.Process()
    out = set()
    for proc in [me] + me.children(recursive=True):
        try:
            out |= {(proc.pid, c.laddr) for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:  # ended meanwhile (another test's process)
            pass
    return out


#: the dashboard, Dask's default HTTP routes (info pages, logs, call stacks, metrics, JSON
#: counts), and the one kept
PAGES = ("status", "info/main/workers.html", "info/main/logs.html", "metrics", "json/counts.json",
         "health")


def test_the_embedded_cluster_serves_no_dashboard_and_listens_on_loopback_only():
    """The server's own cluster is for its jobs: no Bokeh dashboard, and of its scheduler's
    HTTP routes only /health (the others show worker logs, call stacks, task pages to any
    local process), on an ephemeral loopback port, not Dask's default 8787, which the first
    user's server on a machine would take and the next ones be warned about."""
    backend = DaskBackend(n_workers=1, threads_per_worker=1, memory_limit="1GiB")

    before = _listening()  # other tests' servers may run beside this one

    async def run():
        try:
            await asyncio.wait_for(backend.get_client(), 120)
            port = backend.cluster.scheduler.http_server.port
            listening = [address for _, address in _listening() - before]
            pages = await asyncio.to_thread(lambda: {page: _status(f"http://127.0.0.1:{port}/{page}")
                                                     for page in PAGES})
            return port, listening, pages
        finally:
            await backend.close()

    http_port, listening, pages = asyncio.run(run())
    assert pages == {page: 200 if page == "health" else 404 for page in PAGES}, pages
    assert http_port != 8787 and http_port in [a.port for a in listening]
    assert listening and {a.ip for a in listening} == {"127.0.0.1"}, listening


def test_the_embedded_cluster_refuses_connections_without_its_credentials(tmp_path):
    """Its workers run whatever they are sent: only the server (and its workers), which
    hold the cluster's credentials, may connect; anyone else on the machine is refused
    at the TLS handshake, before a message is read."""
    import ssl

    from distributed.security import Security

    backend = DaskBackend(n_workers=1, threads_per_worker=1, memory_limit="1GiB")

    def handshake(host, port, **cert):
        """What a TLS client without the cluster's certificate gets."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        if cert:
            context.load_cert_chain(**cert)
        with socket.create_connection((host, port), timeout=30) as raw:
            with context.wrap_socket(raw) as tls:
                try:
                    return f"read {tls.recv(1)!r}"  # TLS 1.3: the server's verdict comes after the handshake
                except (ssl.SSLError, ConnectionError) as e:
                    return f"refused: {e}"

    async def run(tmp):
        try:
            client = await asyncio.wait_for(backend.get_client(), 120)
            address = backend.cluster.scheduler_address
            assert address.startswith("tls://127.0.0.1:"), address
            assert await client.submit(sum, [1, 2], pure=False) == 3  # the server's own client works
            host, port = address.removeprefix("tls://").rsplit(":", 1)
            other = Security.temporary()  # another user's cluster credentials
            (tmp / "other.pem").write_text(other.tls_client_cert)
            (tmp / "other.key").write_text(other.tls_client_key)
            return await asyncio.to_thread(lambda: (
                handshake(host, int(port)),
                handshake(host, int(port), certfile=tmp / "other.pem", keyfile=tmp / "other.key")))
        finally:
            await backend.close()

    anonymous, stranger = asyncio.run(run(tmp_path))
    assert anonymous.startswith("refused") and "CERTIFICATE_REQUIRED" in anonymous.upper(), anonymous
    assert stranger.startswith("refused") and "UNKNOWN_CA" in stranger.upper(), stranger


def test_a_closed_backend_connects_to_no_cluster_again():
    """A request reaching the extension after its stop must not start (or connect) a
    cluster that would outlive the server: it is answered 'stopping' at once."""
    backend = DaskBackend(scheduler_address="tcp://127.0.0.1:9", connect_timeout=30)

    async def after_close():
        await backend.close()
        with pytest.raises(ServerStopping) as stopping:
            await backend.call(len, [], timeout=30)
        return stopping.value

    error = asyncio.run(asyncio.wait_for(after_close(), 10))
    assert error.status_code == 503 and "stopping" in error.message
    assert backend.client is None and backend.cluster is None


def test_a_cluster_still_starting_when_the_server_stops_is_closed_too():
    """The first job starts the cluster; a stop during that start closes the
    cluster once it is up, rather than leaving it to outlive the server."""
    from distributed import LocalCluster

    made = []

    async def run():
        entered, release = asyncio.Event(), asyncio.Event()

        async def slow_cluster(**kwargs):
            entered.set()
            await release.wait()
            made.append(await LocalCluster(n_workers=0, processes=False, dashboard_address=None,
                                           scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, **kwargs))
            return made[-1]

        backend = DaskBackend(cluster_class=slow_cluster, connect_timeout=30)
        first_job = asyncio.ensure_future(backend.get_client())
        await entered.wait()
        stopping = asyncio.ensure_future(backend.close())
        await asyncio.sleep(0)
        assert not stopping.done()  # it waits for the start
        release.set()
        await stopping
        with pytest.raises(ServerStopping):
            await first_job
        return backend

    backend = asyncio.run(asyncio.wait_for(run(), 60))
    [cluster] = made
    assert cluster.status.name == "closed"
    assert backend.client is None and backend.cluster is None
