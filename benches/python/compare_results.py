"""Counting and the table for benches/compare.sh (standard library only).

`count`: reads what the counting subscriber logged (`mosquitto_sub -F '%U %t %p'`: arrival time, topic, payload),
counts the predictions that arrived in the SECONDS after the first one (a batch message counts as the predictions it
carries), checks each one's top-1 class (classifiers), number of detections (detectors) or anomalous flag against
models/references/, and takes the agent's `dropped` and `predictions_unpublished` from its last health report.
Prints one JSON object.

`table`: reads the JSON lines the script collected and prints the comparison table, each cell the median and
[min-max] over the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def summary(output: dict):
    """What must agree with the reference: the top-1 class, the number of faces, or the anomaly flag."""
    if "classification" in output:
        return output["classification"]["classes"][0]["index"]
    if "detection" in output:
        return len(output["detection"]["detections"])
    if "anomaly" in output:
        return output["anomaly"]["anomalous"]
    raise ValueError(f"no known output in {output}")


def reference_key(origin: str):
    """`cat.jpg` -> ("cat.jpg", None); `activity.csv rows 101-200` -> ("activity.csv", 100)."""
    name, _, rows = origin.partition(" rows ")
    return (Path(name).name, int(rows.split("-")[0]) - 1 if rows else None)


def references(bundle: str, models: Path) -> dict:
    cases = json.loads((models / "references" / f"{bundle}.json").read_text())["cases"]
    return {(Path(c["input"]).name, c.get("start_row")): summary(c["output"]) for c in cases}


def count(args) -> None:
    expected = references(args.bundle, args.models)
    arrivals, health = [], None
    for line in open(args.log, encoding="utf-8"):
        at, topic, payload = line.rstrip("\n").split(" ", 2)
        message = json.loads(payload)
        if topic.endswith("/health"):
            health = message
            continue
        for prediction in message.get("predictions", [message]):  # a batch, or one prediction
            arrivals.append((float(at), prediction))
    if not arrivals:
        sys.exit(f"{args.log}: no prediction arrived")
    start = arrivals[0][0]
    counted = [p for at, p in arrivals if at - start <= args.seconds]
    disagree = sum(summary(p["output"]) != expected.get(reference_key(p["input"])) for p in counted)
    result = {"fps": len(counted) / args.seconds, "checked": len(counted), "disagree": disagree}
    if health is not None:
        source = next(s for s in health["sources"] if s["name"] == args.source)
        result |= {"dropped": source["dropped"], "unpublished": source["predictions_unpublished"]}
    print(json.dumps(result))


def cell(values, digits=0) -> str:
    return f"{statistics.median(values):,.{digits}f} [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"


def ratio(numerators, denominators) -> str:
    return cell([a / b for a, b in zip(numerators, denominators)], 2)


def table(args) -> None:
    runs: dict[str, list[dict]] = {}
    for line in open(args.results, encoding="utf-8"):
        run = json.loads(line)
        runs.setdefault(run["model"], []).append(run)
    print("| model | bare /s | agent /s (÷ bare) | Python /s (÷ bare) | agent ÷ Python | peak RSS agent / Python MB "
          "| agent dropped / unpublished | top-1 disagreements agent / Python | bare, ORT defaults /s (agent ÷ it) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, rounds in runs.items():
        bare = [r["bare_fps"] for r in rounds]
        bare_ort = [r["bare_ort_defaults_fps"] for r in rounds]
        agent = [r["agent"]["fps"] for r in rounds]
        python = [r["python"]["fps"] for r in rounds]
        digits = 1 if statistics.median(bare) < 1000 else 0
        rss = {side: cell([r[side]["peak_rss_bytes"] / 1e6 for r in rounds]) for side in ("agent", "python")}
        lost = {key: cell([r["agent"].get(key, 0) for r in rounds]) for key in ("dropped", "unpublished")}
        disagree = {side: sum(r[side]["disagree"] for r in rounds) for side in ("agent", "python")}
        print(f"| {model} | {cell(bare, digits)} | {cell(agent, digits)} ({ratio(agent, bare)}) "
              f"| {cell(python, digits)} ({ratio(python, bare)}) | {ratio(agent, python)} "
              f"| {rss['agent']} / {rss['python']} | {lost['dropped']} / {lost['unpublished']} "
              f"| {disagree['agent']} / {disagree['python']} | {cell(bare_ort, digits)} ({ratio(agent, bare_ort)}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True)
    counting = commands.add_parser("count")
    counting.add_argument("--log", required=True)
    counting.add_argument("--seconds", type=float, required=True)
    counting.add_argument("--bundle", required=True, help="the shipped bundle's name, for its references")
    counting.add_argument("--models", type=Path, required=True, help="the models/ directory")
    counting.add_argument("--source", default="bench", help="the agent's source name in its health reports")
    counting.set_defaults(run=count)
    tabling = commands.add_parser("table")
    tabling.add_argument("results")
    tabling.set_defaults(run=table)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
