#!/usr/bin/env python3
"""The load driver and checker of scripts/chaos.sh (Python 3, stdlib only).

    load.py load  --urls URL[,URL] --log FILE --prefix P --seconds N [--until FILE] [--kinds runs,features,events,tasks]
    load.py check --urls URL[,URL] --log FILE --prefix P --deadline S [--kinds ...]
                  [--strata "BIN --profile full --data-dir DIR" --pipelines-prefix P]

`load` sends a steady mix of writes round-robin to the servers, one thread
per kind, and appends one JSON line per write to the log: `"ack": true` for
an acknowledged write (a 2xx answer), `"ack": false` for one whose fate is
unknown (a connection cut, a 5xx: it may or may not have been kept). It
runs for --seconds, and on until the file --until exists (the faults are
done).

- runs: POST /v1/runs (acknowledged: 201; a 202 is a saga under way,
  checked by how it ended), a saga over the relational, document and key-value
  engines; the outbox then carries `run.registered` to the read model.
- features: PUT /v1/features/{view}/{entity}, values rising per entity.
- events: POST /v1/events, batches of `view` events with ids of their own,
  consumed by the workers' analytics queue into per-day counters.
- tasks: POST /v1/users (acknowledged: 202), signups in reference cities.
  The workers' onboarding queue stores each user (relational), its profile
  document and its initial features (view `user_profile`), then queues its
  first prediction task (queue `predictions`), which stores its scores.

`check` waits for the system to settle (no open saga, the counters caught
up, the read model complete, every signup ended: onboarded with its first
prediction made or dead-lettered, or itself dead-lettered), within
--deadline seconds, then checks every acknowledged write and prints
`acknowledged N, lost N, duplicated N, orphaned N`; exit status 1 when any
of the last three is not 0. For tasks it reads the stores themselves with
the inspection commands of the `strata` command line given by --strata
(`sql`, `docs find`, `kv keys`), and the dead letters by message id.
"""

import argparse
import datetime
import http.client
import json
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.parse

FRAMEWORK = "chaos"
VIEW = "chaos_view"
DATASET = "chaos-dataset"
ENTITIES = 16
EVENT_BATCH = 5
STARTED_AT = "2026-01-01T00:00:00Z"
# Reference cities (any case resolves), so onboarding can take the signups.
CITIES = ["Berlin", "paris", "LONDON", "Madrid", "Tokyo"]


def call(url, method, path, body=None, timeout=10.0):
    """(status, parsed body); status 0 when the server could not be reached
    or the answer was cut."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body)
        headers = {"content-type": "application/json"} if body is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        answer = conn.getresponse()
        raw = answer.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return answer.status, parsed
    except (OSError, http.client.HTTPException):
        return 0, None
    finally:
        conn.close()


class Log:
    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()

    def write(self, record):
        with self.lock:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()


def setup(urls):
    """The dataset and the feature view, retried until both are there."""
    deadline = time.time() + 60
    while True:
        d, _ = call(urls[0], "POST", "/v1/datasets", {"name": DATASET})
        v, _ = call(urls[0], "PUT", f"/v1/feature-views/{VIEW}", {
            "entity": "user", "ttl_seconds": 315_360_000,
            "features": [{"name": "n", "type": "int"}]})
        if d in (201, 409) and v == 200:
            return
        if time.time() > deadline:
            sys.exit(f"chaos: setup failed: dataset {d}, view {v}")
        time.sleep(0.5)


def registration(prefix, i):
    return {
        "dataset": DATASET,
        "model_id": f"{prefix}-run-{i}",
        "model_name": f"{prefix}-model-{i}",
        "framework": FRAMEWORK,
        "tags": {"chaos": "1"},
        "started_at": STARTED_AT,
        "config": {"i": i},
    }


def load(args):
    urls = args.urls.split(",")
    log = Log(args.log)
    setup(urls)
    day = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    log.write({"kind": "day", "day": day.date().isoformat()})
    end = time.time() + args.seconds
    stop = threading.Event()

    def running():
        if time.time() < end:
            return True
        return bool(args.until) and not _exists(args.until)

    def runs():
        i = 0
        while running():
            url = urls[i % len(urls)]
            status, body = call(url, "POST", "/v1/runs", registration(args.prefix, i), timeout=30)
            # 201 is a registration done; 202 a saga still under way, whose
            # end (completed or compensated) the check reads.
            log.write({"kind": "run", "id": f"{args.prefix}-run-{i}",
                       "ack": status == 201, "status": status})
            i += 1
            time.sleep(0.05)

    def features():
        i = 0
        while running():
            url = urls[i % len(urls)]
            entity = f"{args.prefix}-e{i % ENTITIES}"
            at = datetime.datetime.now(datetime.timezone.utc).isoformat()
            status, _ = call(url, "PUT", f"/v1/features/{VIEW}/{entity}",
                             {"features": {"n": i}, "event_time": at})
            log.write({"kind": "feature", "entity": entity, "value": i,
                       "ack": 200 <= status < 300, "status": status})
            i += 1
            time.sleep(0.02)

    def events():
        i = 0
        while running():
            url = urls[i % len(urls)]
            batch = []
            for _ in range(EVENT_BATCH):
                batch.append({"id": f"{args.prefix}-ev-{i}", "user_id": f"{args.prefix}-u{i % 7}",
                              "type": "view", "product_id": f"p{i % 11}", "at": day.isoformat()})
                i += 1
            status, _ = call(url, "POST", "/v1/events", {"events": batch})
            for event in batch:
                log.write({"kind": "event", "id": event["id"],
                           "ack": 200 <= status < 300, "status": status})
            time.sleep(0.05)

    def tasks():
        i = 0
        while running():
            url = urls[i % len(urls)]
            user = f"{args.prefix}-user-{i}"
            status, _ = call(url, "POST", "/v1/users", {
                "id": user, "email": f"{user}@chaos.example", "name": f"Chaos user {i}",
                "city": CITIES[i % len(CITIES)], "source": "chaos"})
            # 202: the broker confirmed the signup; onboarding follows.
            log.write({"kind": "signup", "id": user, "ack": status == 202, "status": status})
            i += 1
            time.sleep(0.05)

    kinds = {"runs": runs, "features": features, "events": events, "tasks": tasks}
    threads = [threading.Thread(target=kinds[k], daemon=True) for k in args.kinds.split(",")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()


def _exists(path):
    try:
        open(path).close()
        return True
    except OSError:
        return False


def read_log(path):
    runs, feature_acks, feature_tries, events, day = {}, {}, {}, {}, None
    signups = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["kind"] == "day":
                day = r["day"]
            elif r["kind"] == "run":
                runs[r["id"]] = runs.get(r["id"], False) or r["ack"]
            elif r["kind"] == "feature":
                feature_tries.setdefault(r["entity"], []).append(r["value"])
                if r["ack"]:
                    feature_acks.setdefault(r["entity"], []).append(r["value"])
            elif r["kind"] == "event":
                events[r["id"]] = events.get(r["id"], False) or r["ack"]
            elif r["kind"] == "signup":
                signups[r["id"]] = signups.get(r["id"], False) or r["ack"]
    return runs, feature_acks, feature_tries, events, day, signups


def strata_json(args, *command):
    """What a `strata --json` inspection command prints, parsed; it reads
    the stores themselves, not through a server or a cache."""
    argv = shlex.split(args.strata) + ["--json", *command]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])}: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


class Tasks:
    """Where the signups are: the user ids in the relational `users`, in
    the `profiles` documents and among the stored prediction scores, and
    those whose signup or first prediction task is in the dead letters."""

    def __init__(self, args, url):
        users = f"{args.prefix}-user-"
        self.users = {r["id"] for r in strata_json(
            args, "sql", f"SELECT id FROM users WHERE id LIKE '{users}%'", "--max-rows", "1000000")}
        self.profiles = {d["_id"] for d in strata_json(
            args, "docs", "find", "profiles", json.dumps({"_id": {"$regex": "^" + re.escape(users)}}),
            "--projection", '{"_id": 1}', "--limit", "1000000")}
        scores = f"{args.pipelines_prefix}:predictions:user:"
        self.scores = {k[len(scores):] for k in strata_json(args, "kv", "keys", f"{scores}{users}*")}
        self.dead_signups = {m[len("signup-"):] for m in dead_ids(url, "onboarding")
                             if m.startswith("signup-")}
        self.dead_predictions = {m[len("predict-"):-len("-signup")] for m in dead_ids(url, "predictions")
                                 if m.startswith("predict-") and m.endswith("-signup")}

    def done(self, user):
        """Whether the signup has ended: onboarded with its first
        prediction made or dead-lettered, or itself dead-lettered."""
        return user in self.dead_signups or user in self.scores or user in self.dead_predictions


def dead_ids(url, queue):
    """The message ids of a queue's dead letters (each one, or an error)."""
    status, body = call(url, "GET", f"/v1/dead-letters?queue={queue}&limit=1000", timeout=60)
    if status != 200 or not isinstance(body, dict):
        raise RuntimeError(f"GET /v1/dead-letters?queue={queue}: {status}")
    if body["total"] > len(body["items"]):
        raise RuntimeError(f"{body['total']} dead letters in {queue}: too many to match by id")
    return {item["message_id"] for item in body["items"]}


def check(args):
    urls = args.urls.split(",")
    kinds = args.kinds.split(",")
    runs, feature_acks, feature_tries, events, day, signups = read_log(args.log)
    deadline = time.time() + args.deadline
    acked_runs = [r for r, ok in runs.items() if ok]
    acked_events = [e for e, ok in events.items() if ok]
    unknown_events = [e for e, ok in events.items() if not ok]
    acked_signups = [u for u, ok in signups.items() if ok]
    acknowledged = len(acked_runs) + sum(len(v) for v in feature_acks.values()) \
        + len(acked_events) + len(acked_signups)
    if "tasks" in kinds and not (args.strata and args.pipelines_prefix):
        sys.exit("chaos: checking tasks needs --strata and --pipelines-prefix")
    problems = []

    def settled():
        """Why the system has not settled yet, or None."""
        for url in urls:
            status, body = call(url, "GET", "/v1/sagas?open=true&limit=100")
            if status != 200:
                return f"GET /v1/sagas on {url}: {status}"
            if body:
                return f"{len(body)} saga(s) open"
        if "events" in kinds:
            status, body = call(urls[0], "GET", f"/v1/analytics/today?day={day}")
            counted = (body or {}).get("counts", {}).get("view", 0) if status == 200 else -1
            if counted < len(acked_events) - dead_count("analytics"):
                return f"events counted {counted} of {len(acked_events)} acknowledged"
        if "runs" in kinds:
            # A registration undone while its config write was in flight
            # may see that write land late; each saga sweep removes it.
            late = [r for r, ok in runs.items() if not ok
                    and call(urls[0], "GET", f"/v1/runs/{r}")[0] == 404
                    and call(urls[0], "GET", f"/v1/models/{r}/config")[0] == 200]
            if late:
                return f"{len(late)} undone registration(s) with a config document"
        if "runs" in kinds and args.read_model:
            missing = [run for run in acked_runs
                       if call(urls[0], "GET", f"/v1/models/{run}/view")[0] != 200]
            # An event the read model's handler gave up on is in its dead
            # letters (to replay), which is not a loss.
            if len(missing) > dead_count("read-model"):
                return f"no read model of {missing[0]} yet ({len(missing)} missing)"
        if "tasks" in kinds:
            try:
                tasks = Tasks(args, urls[0])
            except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
                return f"cannot read the signups: {e}"
            # Every acknowledged signup, and every other that reached a
            # store, has ended (a signup still retried has not).
            waiting = [u for u in signups if (signups[u] or u in tasks.users) and not tasks.done(u)]
            if waiting:
                return f"signup {waiting[0]} not ended yet ({len(waiting)} waiting)"
        return None

    def saga_state(run):
        status, body = call(urls[0], "GET", f"/v1/sagas?subject={run}&limit=1")
        return body[0].get("state") if status == 200 and body else None

    def dead_count(queue):
        status, body = call(urls[0], "GET", f"/v1/dead-letters?queue={queue}&limit=1")
        return int(body.get("total", 0)) if status == 200 and isinstance(body, dict) else 0

    why = settled()
    while why is not None and time.time() < deadline:
        time.sleep(1)
        why = settled()
    if why is not None:
        problems.append(f"not settled within {args.deadline}s: {why}")
    print(f"chaos: settled: {why is None}", file=sys.stderr)

    lost = duplicated = orphaned = 0
    # Runs: every acknowledged one in every engine, through every server;
    # every attempted one whole or absent (no orphan).
    if "runs" in kinds:
        present = 0
        no_view = []
        for run, ok in runs.items():
            found = {}
            for url in urls:
                s_run, _ = call(url, "GET", f"/v1/runs/{run}")
                s_cfg, _ = call(url, "GET", f"/v1/models/{run}/config")
                found[url] = (s_run, s_cfg)
            s_run, s_cfg = found[urls[0]]
            if any(v != found[urls[0]] for v in found.values()):
                problems.append(f"run {run}: the servers disagree: {found}")
                orphaned += 1
            if s_run == 200 and s_cfg == 200:
                present += 1
                if args.read_model:
                    s_view, _ = call(urls[0], "GET", f"/v1/models/{run}/view")
                    if s_view != 200:
                        no_view.append(run)
            elif s_run == 404 and s_cfg == 404:
                if ok:
                    problems.append(f"run {run} was acknowledged and is gone")
                    lost += 1
                elif saga_state(run) == "completed":
                    problems.append(f"run {run}: its saga completed and it is gone")
                    lost += 1
            else:
                problems.append(f"run {run}: run {s_run}, config {s_cfg}, saga {saga_state(run)}")
                orphaned += 1
        dead_views = dead_count("read-model")
        if dead_views:
            print(f"chaos: read model: {dead_views} event(s) in the dead letters", file=sys.stderr)
        for run in no_view[dead_views:]:
            problems.append(f"run {run}: no read model, and not among the dead letters")
            lost += 1

    # Features: each entity holds its last acknowledged value, or a later
    # one that was tried; the same through every server (caches included).
    if "features" in kinds:
        for entity, acked in feature_acks.items():
            last = max(acked)
            tried = set(feature_tries.get(entity, []))
            for url in urls:
                status, body = call(url, "GET", f"/v1/features/{VIEW}/{entity}")
                value = (((body or {}).get("features") or {}).get("n") or {}).get("value") \
                    if status == 200 else None
                if value is None or value < last or value not in tried:
                    problems.append(f"feature {entity} on {url}: {value}, last acknowledged {last}")
                    lost += 1

    # Events: counted exactly once in effect, or in the dead letters.
    if "events" in kinds:
        status, body = call(urls[0], "GET", f"/v1/analytics/today?day={day}")
        counted = (body or {}).get("counts", {}).get("view", 0) if status == 200 else 0
        dead = dead_count("analytics")
        if counted + dead < len(acked_events):
            problems.append(f"events: {counted} counted + {dead} dead of {len(acked_events)} acknowledged")
            lost += len(acked_events) - counted - dead
        if counted > len(acked_events) + len(unknown_events):
            problems.append(f"events: {counted} counted of {len(acked_events) + len(unknown_events)} sent")
            duplicated += counted - len(acked_events) - len(unknown_events)

    # Tasks: every acknowledged signup onboarded in every store it belongs
    # to (the user row, its profile document, its features through every
    # server) with its first prediction's scores stored or that task in the
    # dead letters, or the signup itself in the dead letters; every signup
    # tried whole or absent.
    onboarded = dead_signups = 0
    if "tasks" in kinds:
        try:
            tasks = Tasks(args, urls[0])
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
            problems.append(f"tasks: cannot read the signups: {e}")
            tasks = None
        for user, ok in (signups.items() if tasks else []):
            features = []
            for url in urls:
                status, body = call(url, "GET", f"/v1/features/user_profile/{user}")
                value = (((body or {}).get("features") or {}).get("country") or {}).get("value") \
                    if status == 200 else None
                features.append(value is not None)
            stores = {"user": user in tasks.users, "profile": user in tasks.profiles,
                      "features": all(features), "scores": user in tasks.scores}
            if len(set(features)) > 1:
                problems.append(f"signup {user}: its features on some servers only: {features}")
                orphaned += 1
            elif user in tasks.dead_signups:
                dead_signups += 1
            elif stores["user"] and stores["profile"] and stores["features"]:
                onboarded += 1
                if not (stores["scores"] or user in tasks.dead_predictions):
                    problems.append(f"signup {user}: its first prediction neither ran nor is dead-lettered")
                    lost += 1
            elif not any(stores.values()):
                if ok:
                    problems.append(f"signup {user} was acknowledged and is nowhere")
                    lost += 1
            else:
                problems.append(f"signup {user}: only in {[k for k, v in stores.items() if v]}")
                orphaned += 1

    # No saga left open.
    status, body = call(urls[0], "GET", "/v1/sagas?open=true&limit=100")
    if status != 200 or body:
        problems.append(f"open sagas: {status} {body}")
        orphaned += len(body) if isinstance(body, list) else 1

    for p in problems[:50]:
        print(f"chaos: {p}", file=sys.stderr)
    print(f"chaos: runs {sum(runs.values())}/{len(runs)} acknowledged, "
          f"feature writes {sum(len(v) for v in feature_acks.values())}, "
          f"events {len(acked_events)} acknowledged ({len(unknown_events)} unknown), "
          f"signups {len(acked_signups)}/{len(signups)} acknowledged "
          f"({onboarded} onboarded, {dead_signups} dead-lettered)")
    print(f"acknowledged {acknowledged}, lost {lost}, duplicated {duplicated}, orphaned {orphaned}")
    sys.exit(1 if lost or duplicated or orphaned or problems else 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("load", "check"):
        p = sub.add_parser(name)
        p.add_argument("--urls", required=True)
        p.add_argument("--log", required=True)
        p.add_argument("--prefix", required=True)
        p.add_argument("--kinds", default="runs,features,events,tasks")
        if name == "load":
            p.add_argument("--seconds", type=float, default=60)
            p.add_argument("--until")
        else:
            p.add_argument("--deadline", type=float, default=120)
            p.add_argument("--read-model", action="store_true",
                           help="also require each run's read model (the outbox relay and a worker)")
            p.add_argument("--strata", help="the strata command that reads the stores (tasks)")
            p.add_argument("--pipelines-prefix", help="pipelines.prefix of the servers (tasks)")
    args = parser.parse_args()
    load(args) if args.command == "load" else check(args)


if __name__ == "__main__":
    main()
