"""What we know about libraries that block the gevent hub: the modules that give them away
and the fix for each (reported by the import probe)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NamedTuple


class ModuleRisk(NamedTuple):
    module: str  # the name in sys.modules that gives the library away
    library: str
    why: str
    fix: str
    # Given the loaded module, False when it has been made cooperative; None: always a risk.
    still_blocks: Callable[[Any], bool] | None = None
    # Harmless merely imported (tracers import it to patch it): a risk once used.
    on_use: bool = False


def _psycopg2_without_wait_callback(module: Any) -> bool:
    extensions = getattr(module, "extensions", None)
    return extensions is None or extensions.get_wait_callback() is None


def _grpc_without_gevent(module: Any) -> bool:
    cygrpc = sys.modules.get("grpc._cython.cygrpc")
    return not getattr(cygrpc, "g_gevent_activated", False)


def _zmq_not_green(module: Any) -> bool:
    return "zmq.green" not in sys.modules


def _oracledb_thick(module: Any) -> bool:
    is_thin = getattr(module, "is_thin_mode", None)
    return is_thin is not None and not is_thin()


MODULE_RISKS: tuple[ModuleRisk, ...] = (
    ModuleRisk("MySQLdb", "mysqlclient (MySQLdb)",
               "libmysqlclient waits for the server inside C, so every query freezes all "
               "invocations in the process",
               "use PyMySQL, which cooperates: `pip install PyMySQL` and call "
               "`pymysql.install_as_MySQLdb()` before anything imports MySQLdb"),
    ModuleRisk("psycopg2", "psycopg2 without a wait callback",
               "libpq waits for the server inside C unless a wait callback is registered",
               "leave LMI_GEVENT_PSYCOPG2_WAIT_CALLBACK on (the default registers one), or "
               "move to psycopg 3", _psycopg2_without_wait_callback),
    ModuleRisk("_mysql_connector", "mysql-connector-python's C extension",
               "the C extension waits for the server inside C",
               "connect with `use_pure=True` (the pure-Python protocol cooperates)"),
    ModuleRisk("pymssql", "pymssql",
               "FreeTDS waits for the server inside C",
               "use python-tds (`pytds`), or run queries in gevent's threadpool "
               "(`gevent.get_hub().threadpool.apply(fn, args)`)"),
    ModuleRisk("cx_Oracle", "cx_Oracle",
               "Oracle's client library waits for the server inside C",
               "use python-oracledb in thin mode (its default)"),
    ModuleRisk("oracledb", "python-oracledb in thick mode",
               "thick mode waits inside Oracle's client library",
               "do not call `oracledb.init_oracle_client()`: thin mode cooperates",
               _oracledb_thick),
    ModuleRisk("pyodbc", "pyodbc",
               "ODBC drivers wait for the server inside C",
               "run queries in gevent's threadpool (`gevent.get_hub().threadpool.apply`)"),
    ModuleRisk("ibm_db", "ibm_db", "the Db2 client waits inside C",
               "run queries in gevent's threadpool (`gevent.get_hub().threadpool.apply`)"),
    ModuleRisk("cassandra.io.libevreactor", "cassandra-driver's libev reactor",
               "its event loop runs in C threads that the gevent hub cannot wait on",
               "pass `connection_class=cassandra.io.geventreactor.GeventConnection` "
               "to `Cluster`"),
    ModuleRisk("grpc", "grpcio without gevent mode",
               "gRPC's C core waits in its own threads; calls block the hub unless gRPC "
               "was told about gevent",
               "leave LMI_GEVENT_GRPC_GEVENT on (the default calls "
               "`grpc.experimental.gevent.init_gevent()` when grpc is imported)",
               _grpc_without_gevent),
    ModuleRisk("confluent_kafka", "confluent-kafka (librdkafka)",
               "produce/poll/flush/consume wait inside librdkafka",
               "call them with timeout=0 in a loop around `gevent.sleep()`, or in gevent's "
               "threadpool"),
    ModuleRisk("pylibmc", "pylibmc (libmemcached)",
               "libmemcached waits for the server inside C",
               "use pymemcache, which cooperates"),
    ModuleRisk("_ldap", "python-ldap", "libldap waits for the server inside C",
               "use ldap3, which cooperates"),
    ModuleRisk("pycurl", "pycurl", "libcurl's easy interface waits inside C",
               "use requests or urllib3, which cooperate"),
    ModuleRisk("zmq", "pyzmq without zmq.green",
               "libzmq sockets wait inside C", "`import zmq.green as zmq`", _zmq_not_green),
    ModuleRisk("_sqlite3", "sqlite3",
               "each call runs to completion in C (disk I/O, waiting on a database lock)",
               "keep statements short, or run long ones in gevent's threadpool",
               on_use=True),
)


def loaded_risks(modules: dict[str, Any]) -> list[dict[str, Any]]:
    """The libraries of :data:`MODULE_RISKS` that are loaded and still block."""
    found = []
    for risk in MODULE_RISKS:
        module = modules.get(risk.module)
        if module is None:
            continue
        try:
            blocks = risk.still_blocks is None or risk.still_blocks(module)
        except Exception:  # noqa: BLE001 - a library we cannot inspect counts as blocking
            blocks = True
        if blocks:
            found.append({"module": risk.module, "library": risk.library, "why": risk.why,
                          "fix": risk.fix, "on_use": risk.on_use})
    return found


def sqlite_in_use() -> bool:
    """A sqlite3 connection exists now (the handler opened a database at import)."""
    import gc

    connection = getattr(sys.modules.get("sqlite3"), "Connection", None)
    return connection is not None and any(isinstance(item, connection)
                                          for item in gc.get_objects())
