"""Where a claim and a decision spend their time: one reviewer claiming and deciding over and
over through Django's real WSGI handler (every middleware, the shipped settings, token
authentication), in this process, so Python's own profiler sees all of it.

Run from the repository root against the bench database (bench/_seed.py's projects)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loupe_bench_scale \\
        .venv/bin/python bench/review_profile.py [--project review-100k] [--pairs 300] [--profile]

Prints, per claim+decision pair: wall time, this process's CPU time (Python, psycopg), SQL
statements and their wall time (the database's own work and the wait for it), then each
statement's mean time. With ``--profile``: the same run under cProfile with a CPU clock, grouped
by package (how much is the ORM building SQL, the middleware, JSON, ...) and by Loupe function.
Nothing is published to a worker that does not run: after commit the request only queues
messages (CELERY_BROKER_URL as set, e.g. Redis as shipped).
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import collections
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

from bench import _seed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="review-100k", help="a bench/_seed.py project (default review-100k)")
    parser.add_argument("--pairs", type=int, default=300, help="timed claim+decision pairs (default 300)")
    parser.add_argument("--profile", action="store_true", help="also run them under cProfile (CPU clock)")
    return parser.parse_args(argv)


class Wsgi:
    """Requests straight into Django's WSGI handler, as gunicorn would make them."""

    def __init__(self, key: str) -> None:
        from django.core.wsgi import get_wsgi_application

        self.app, self.key = get_wsgi_application(), key

    def post(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body or {}).encode()
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data),
            "HTTP_AUTHORIZATION": f"Token {self.key}", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        status = []
        chunks = self.app(environ, lambda line, headers, exc_info=None: status.append(int(line.split()[0])))
        payload = b"".join(chunks)
        chunks.close()
        return status[0], (json.loads(payload) if payload else {})

    def pair(self, slug: str) -> None:
        status, claim = self.post(f"/api/v1/projects/{slug}/review/claim/")
        if status != 200:
            raise SystemExit(f"claim answered {status}: {claim}")
        status, decided = self.post(f"/api/v1/reviews/{claim['lease']['token']}/decision/",
                                    {"labels": [claim["candidates"][0]["label_id"]], "seconds_spent": 1})
        if status != 201:
            raise SystemExit(f"decision answered {status}: {decided}")


def timed(client: Wsgi, slug: str, pairs: int) -> None:
    from django.db import connection

    statements: dict[str, list[float]] = collections.defaultdict(list)

    def record(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements[sql].append(time.perf_counter() - started)

    with connection.execute_wrapper(record):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(pairs):
            client.pair(slug)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    count = sum(len(times) for times in statements.values())
    sql_wall = sum(sum(times) for times in statements.values())
    print(f"{pairs} pairs: wall {1000 * wall / pairs:.1f} ms/pair, this process's CPU {1000 * cpu / pairs:.1f} ms/pair, "
          f"{count / pairs:.1f} SQL statements taking {1000 * sql_wall / pairs:.1f} ms/pair (wall)")
    for sql, times in sorted(statements.items(), key=lambda kv: -sum(kv[1])):
        sql = " ".join(sql.split())
        print(f"  {len(times) / pairs:4.1f}/pair {1000 * sum(times) / len(times):7.2f} ms  {sql[:70]} ... {sql[-80:]}")


def profiled(client: Wsgi, slug: str, pairs: int) -> None:
    profile = cProfile.Profile(time.process_time)
    profile.runcall(lambda: [client.pair(slug) for _ in range(pairs)])
    stats = pstats.Stats(profile).stats
    by_package: collections.Counter = collections.Counter()
    for (path, _, name), (_, _, own, _, _) in stats.items():
        by_package[_package(path, name)] += own
    total = sum(by_package.values())
    print(f"cProfile, CPU clock ({1000 * total / pairs:.1f} ms/pair under the profiler): own time by package")
    for package, own in by_package.most_common(15):
        print(f"  {100 * own / total:5.1f}%  {package}")
    print("cumulative time of Loupe's functions and the middleware chain, share of the whole")
    root = Path(__file__).resolve().parent.parent
    rows = [(cumulative, calls, f"{Path(path).relative_to(root)}:{name}")
            for (path, _, name), (_, calls, _, cumulative, _) in stats.items()
            if path.startswith(str(root)) and "/bench/" not in path and "site-packages" not in path]
    # Everything below the middleware chain: the rest of the whole is the middleware's share.
    rows += [(cumulative, calls, "django: the view and below (_get_response)")
             for (path, _, name), (_, calls, _, cumulative, _) in stats.items()
             if path.endswith("django/core/handlers/base.py") and name == "_get_response"]
    for cumulative, calls, name in sorted(rows, reverse=True)[:30]:
        print(f"  {100 * cumulative / total:5.1f}%  {calls:6d} calls  {name}")


def _package(path: str, name: str) -> str:
    if "site-packages/" in path:
        parts = path.split("site-packages/")[1].split("/")
        return "/".join(parts[:3]) if parts[0] == "django" else parts[0]
    if path.startswith(("~", "<")):
        return f"builtin {name[:40]}"
    return path.rsplit("/", 1)[-1] if "/lib/python" in path else path.split("/")[-2]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _seed.setup_django(Path(tempfile.mkdtemp(prefix="loupe-review-profile-")))
    from classify.auth import issue_token
    from classify.models import ApiToken, Project

    project = Project.objects.filter(slug=args.project).first()
    if project is None:
        raise SystemExit(f"no project {args.project!r}: run bench/review_http.py once to seed it")
    reviewer = _seed.reviewers_of(project, 1)[0]
    client = Wsgi(issue_token(reviewer))
    try:
        _seed.reset_project(project)
        for _ in range(5):  # untimed: connection, caches, the token's first use
            client.pair(project.slug)
        timed(client, project.slug, args.pairs)
        if args.profile:
            profiled(client, project.slug, args.pairs)
    finally:
        ApiToken.objects.filter(user=reviewer).delete()
        _seed.reset_project(project)


if __name__ == "__main__":
    main()
