"""PyMySQL (pure Python) and mysqlclient (MySQLdb, libmariadb in C): SELECT SLEEP()."""

from __future__ import annotations

from overlap_meter import answer, waiting

SERVER = {"host": "127.0.0.1", "port": 3306, "user": "root"}  # tests/drivers/conftest.py


def with_pymysql(event, context):
    import pymysql

    connection = pymysql.connect(password="", database="test", **SERVER)
    try:
        with connection.cursor() as cursor, waiting():
            cursor.execute("SELECT SLEEP(%s), %s", (event["seconds"], event["token"]))
    finally:
        connection.close()
    return answer()


def with_mysqlclient(event, context):
    import MySQLdb

    connection = MySQLdb.connect(passwd="", db="test", **SERVER)
    try:
        cursor = connection.cursor()
        with waiting():
            cursor.execute("SELECT SLEEP(%s), %s", (event["seconds"], event["token"]))
    finally:
        connection.close()
    return answer()
