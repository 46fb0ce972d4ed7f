"""`dmn audit NAME`: every version of a registered model with its lineage, and the promotion history."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from dmn.promotion import CHALLENGER, CHAMPION, history


def audit(name: str, tracking_uri: str | None = None) -> str:
    client = MlflowClient(tracking_uri) if tracking_uri else MlflowClient()
    model = client.get_registered_model(name)
    aliases: dict[str, list[str]] = {}  # a version may hold several aliases (champion and challenger)
    for alias, version in sorted(model.aliases.items(), key=lambda item: (item[0] != CHAMPION, item[0])):
        aliases.setdefault(str(version), []).append(alias)
    lines = [f"# {name}", ""]
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version), reverse=True)
    for version in versions:
        run = client.get_run(version.run_id)
        metrics = {k: v for k, v in run.data.metrics.items() if k.endswith("test_accuracy")}
        params = run.data.params
        alias = "".join(f"  @{held}" for held in aliases.get(str(version.version), []))
        lines += [
            f"## version {version.version}{alias}",
            f"- run: {version.run_id} ({run.info.artifact_uri}/report/evaluation.md)",
            f"- data digest: {version.tags.get('data_digest')}",
            f"- training digest: {version.tags.get('training_digest')}",
            f"- code: {version.tags.get('code_version')}",
            f"- units: {version.tags.get('units', version.tags.get('babi_tasks'))}; "
            f"size {params.get('size')}; architecture {params.get('model.architecture', 'dmn+')}; "
            f"seed {params.get('train.seed')}; hidden {params.get('model.hidden_size')}",
            "- test accuracy: " + ", ".join(f"{k.split('.')[0]} {v:.4f}" for k, v in sorted(metrics.items())),
            "",
        ]
    lines += ["## promotion history (newest first)", ""]
    decisions = history(name, tracking_uri)
    lines += [
        f"- {d['at']}: {d['action']} version {d['version']} (champion {d['champion_before']} -> "
        f"{d['champion_after']}): {d['reason']}"
        for d in decisions
    ] or ["- none"]
    lines.append(f"\naliases: {CHAMPION} = {_get(model, CHAMPION)}, {CHALLENGER} = {_get(model, CHALLENGER)}")
    return "\n".join(lines) + "\n"


def _get(model, alias: str) -> str:
    return str(model.aliases.get(alias, "none"))
