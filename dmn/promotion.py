"""Promotion in the MLflow registry: aliases `champion` and `challenger`, a gate, a forced override with a
reason, rollback, and every decision recorded on the version.

The gate: a challenger replaces the champion only if, on the same test data (same data digest), it is at
least as accurate on every unit (bAbI task...) the champion answers (within `tolerance`) and better on the mean.
A model with no champion yet takes a version as its first champion only if it clears an absolute bar (a
maximum mean error and failed units: `Gate`), whether it was registered by `dmn run`, the retrain deployment
or promoted by hand.
Every decision is all-or-nothing: if any step fails, the aliases and tags it changed are put back as they were.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dmn.apps import application
from dmn.errors import ConfigError
from dmn.operations_config import Gate, PromotionConfig
from dmn.report import unit_results

CHAMPION, CHALLENGER = "champion", "challenger"
DECISION_TAG = "dmn.decision."  # + UTC timestamp -> JSON of a Decision
PREVIOUS_TAG = "dmn.previous_champion"


@dataclass(frozen=True)
class Decision:
    action: str  # "promote", "reject", "force", "rollback"
    version: str
    champion_before: str | None
    champion_after: str | None
    reason: str
    at: str

    @property
    def promoted(self) -> bool:
        return self.champion_after == self.version and self.action != "reject"


def _client(tracking_uri: str | None) -> MlflowClient:
    return MlflowClient(tracking_uri) if tracking_uri else MlflowClient()


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def require_version(client: MlflowClient, name: str, version: str) -> None:
    try:
        client.get_model_version(name, str(version))
    except MlflowException as error:
        raise ConfigError(f"model {name!r} has no version {version!r}") from error


def version_report(client: MlflowClient, name: str, version: str) -> dict:
    """The evaluation report logged with the version's run."""
    run_id = client.get_model_version(name, str(version)).run_id
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(run_id, "report/evaluation.json", folder)
        with open(path) as stream:
            return json.load(stream)


def champion_report(config) -> dict | None:
    """The evaluation report of `config.model_name`'s champion, or None when it has none."""
    client = _client(config.tracking_uri)
    champion = alias_version(client, config.model_name, CHAMPION)
    return version_report(client, config.model_name, champion) if champion else None


def compare(candidate: dict, champion: dict, tolerance: float) -> tuple[bool, str]:
    """(passes, reason) of the promotion gate on two evaluation reports."""
    if candidate["data_digest"] != champion["data_digest"]:
        return False, "evaluated on other test data (data digests differ): not comparable"
    theirs = {r["unit"]: r["accuracy"] for r in unit_results(champion)}
    ours = {r["unit"]: r["accuracy"] for r in unit_results(candidate)}
    title = candidate.get("unit_title", "bAbI task")
    missing = sorted(set(theirs) - set(ours))
    if missing:
        return False, f"does not answer {title} {missing} of the champion"
    worse = [f"{title} {t}: {ours[t]:.4f} < {theirs[t]:.4f}" for t in sorted(theirs) if ours[t] < theirs[t] - tolerance]
    if worse:
        return False, f"worse than the champion beyond tolerance {tolerance} ({'; '.join(worse)})"
    mean_ours = sum(ours[t] for t in theirs) / len(theirs)
    mean_theirs = sum(theirs.values()) / len(theirs)
    if mean_ours <= mean_theirs:
        return False, f"not better on the mean accuracy ({mean_ours:.4f} <= {mean_theirs:.4f})"
    return True, f"at least as good on every {title} and better on the mean ({mean_ours:.4f} > {mean_theirs:.4f})"


def first_champion_bar(report: dict, gate: Gate) -> tuple[bool, str]:
    """(passes, reason) of a first champion's absolute bar: its mean test error and failed units."""
    rows = unit_results(report)
    if not rows:
        raise ConfigError("the version's report holds no unit: nothing to judge a first champion on")
    mean_error = sum(1 - r["accuracy"] for r in rows) / len(rows)
    failed = [r["unit"] for r in rows if r.get("failed")]
    bar = gate.first_max_error
    if bar is None:  # reports before applications had names: bAbI
        bar = application(report.get("application", "babi")).first_max_error
    if mean_error > bar:
        return False, f"no champion yet, and a first champion's mean error {mean_error:.2%} is above the bar " + (
            f"{bar:.2%} (first_max_error)"
        )
    if gate.first_max_failed is not None and len(failed) > gate.first_max_failed:
        return False, f"no champion yet, and a first champion fails {len(failed)} units {failed}, more than " + (
            f"{gate.first_max_failed} (first_max_failed)"
        )
    return True, f"no champion yet; clears the first champion's bar (mean error {mean_error:.2%})"


def promote(
    name: str,
    version: str | None = None,
    *,
    force: bool = False,
    reason: str | None = None,
    gate: Gate | None = None,
    tracking_uri: str | None = None,
) -> Decision:
    """Gate `version` (default: the challenger) against the champion, or against the first champion's bar
    when there is none, and move `champion` if it passes."""
    gate = gate or Gate()
    client = _client(tracking_uri)
    version = _version_to_promote(client, name, version, force, reason)
    champion = alias_version(client, name, CHAMPION)
    if force:
        action, why = "force", f"forced: {reason}"
    elif champion is None:
        passes, why = first_champion_bar(version_report(client, name, version), gate)
        action = "promote" if passes else "reject"
    elif champion == version:
        action, why = "reject", "already the champion"
    else:
        candidate, current = version_report(client, name, version), version_report(client, name, champion)
        passes, why = compare(candidate, current, gate.tolerance)
        action = "promote" if passes else "reject"
    after = version if action in ("promote", "force") else champion
    decision = Decision(action, version, champion, after, why, _now())
    with _RegistryChanges(client, name) as changes:
        if action != "reject":
            if champion is not None and champion != version:
                changes.set_tag(version, PREVIOUS_TAG, champion)
            changes.set_alias(CHAMPION, version)
        changes.record(version, decision)
    return decision


def _version_to_promote(client: MlflowClient, name: str, version, force: bool, reason: str | None) -> str:
    """The version a promotion is about; ConfigError for a forced one without reason or a missing version."""
    if force and not reason:
        raise ConfigError("--force needs --reason: a manual promotion is recorded with its reason")
    version = str(version) if version is not None else alias_version(client, name, CHALLENGER)
    if version is None:
        raise ConfigError(f"model {name!r} has no version given and no {CHALLENGER!r} alias")
    require_version(client, name, version)
    return version


def check_promotion(config: PromotionConfig) -> None:
    """Raise the ConfigError `apply_promotion(config)` would, without deciding anything."""
    _version_to_promote(_client(config.tracking_uri), config.model_name, config.version, config.force, config.reason)


def apply_promotion(config: PromotionConfig) -> Decision:
    """`promote` with the parameters of the CLI, the flow and the deployment."""
    return promote(
        config.model_name,
        config.version,
        force=config.force,
        reason=config.reason,
        gate=Gate(**config.model_dump(include=set(Gate.model_fields))),
        tracking_uri=config.tracking_uri,
    )


def promote_if_first(name: str, version: str, gate: Gate, tracking_uri: str | None = None) -> Decision | None:
    """A newly registered version of a model with no champion yet: `promote` (the first champion's bar);
    None when there is a champion (a later version stays challenger until it is promoted)."""
    champion = alias_version(_client(tracking_uri), name, CHAMPION)
    if champion == str(version):  # a retry after this promotion succeeded: its decision
        return next(Decision(**d) for d in history(name, tracking_uri) if d["version"] == str(version))
    if champion is not None:
        return None
    return promote(name, version, gate=gate, tracking_uri=tracking_uri)


def rollback(name: str, *, reason: str = "rollback", tracking_uri: str | None = None) -> Decision:
    """Move `champion` back to the version it replaced."""
    client = _client(tracking_uri)
    champion, previous = _rollback_versions(client, name)
    decision = Decision("rollback", previous, champion, previous, reason, _now())
    with _RegistryChanges(client, name) as changes:
        changes.set_alias(CHAMPION, previous)
        changes.record(champion, decision)
        changes.record(previous, decision)
    return decision


def _rollback_versions(client: MlflowClient, name: str) -> tuple[str, str]:
    """(champion, the version it replaced); ConfigError when there is nothing to roll back."""
    champion = alias_version(client, name, CHAMPION)
    if champion is None:
        raise ConfigError(f"model {name!r} has no {CHAMPION!r} alias to roll back")
    previous = client.get_model_version(name, champion).tags.get(PREVIOUS_TAG)
    if previous is None:
        raise ConfigError(f"{name} version {champion} replaced no earlier champion: nothing to roll back to")
    return champion, previous


def check_rollback(name: str, tracking_uri: str | None = None) -> None:
    """Raise the ConfigError `rollback(name)` would, without moving anything."""
    _rollback_versions(_client(tracking_uri), name)


def history(name: str, tracking_uri: str | None = None) -> list[dict]:
    """Every decision recorded on the versions of `name`, newest first."""
    client = _client(tracking_uri)
    decisions = [
        json.loads(value)
        for version in client.search_model_versions(f"name = '{name}'")
        for key, value in version.tags.items()
        if key.startswith(DECISION_TAG)
    ]
    unique = {(d["at"], d["action"], d["version"]): d for d in decisions}
    return sorted(unique.values(), key=lambda d: d["at"], reverse=True)


class _RegistryChanges:
    """Context manager for the alias and tag changes of one decision: if a step fails, the changes made so
    far are undone in reverse order (each undo is noted before its change, which may fail half done)."""

    def __init__(self, client: MlflowClient, name: str):
        self.client, self.name, self.undo = client, name, []

    def set_alias(self, alias: str, version: str) -> None:
        before = alias_version(self.client, self.name, alias)
        self.undo.append(lambda: self._put_alias(alias, before))
        self.client.set_registered_model_alias(self.name, alias, version)

    def set_tag(self, version: str, key: str, value: str) -> None:
        before = self.client.get_model_version(self.name, version).tags.get(key)
        self.undo.append(lambda: self._put_tag(version, key, before))
        self.client.set_model_version_tag(self.name, version, key, value)

    def record(self, version: str, decision: Decision) -> None:
        self.set_tag(version, DECISION_TAG + decision.at, json.dumps(asdict(decision)))

    def _put_alias(self, alias: str, version: str | None) -> None:
        if version is not None:
            self.client.set_registered_model_alias(self.name, alias, version)
        elif alias_version(self.client, self.name, alias) is not None:
            self.client.delete_registered_model_alias(self.name, alias)

    def _put_tag(self, version: str, key: str, value: str | None) -> None:
        if value is not None:
            self.client.set_model_version_tag(self.name, version, key, value)
        elif key in self.client.get_model_version(self.name, version).tags:
            self.client.delete_model_version_tag(self.name, version, key)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is not None:
            for step in reversed(self.undo):
                try:  # every undo is tried; the first error stays the one raised
                    step()
                except Exception as undo_error:
                    error.add_note(f"undoing a registry change failed too, set it by hand: {undo_error!r}")
        return False


def _now() -> str:
    """UTC time as it can stand in an MLflow tag key (no '+'), sortable as text."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
