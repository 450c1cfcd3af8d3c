"""The registry helpers against a real (sqlite) MLflow registry: "no such alias" is None, any other
registry failure surfaces; aliases, versions and URIs resolve in one place."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, PERMISSION_DENIED, ErrorCode

from ragops.models import registry
from ragops.models.registry import (
    ModelNotRegisteredError,
    alias_version,
    model_name,
    promote,
    resolve,
    resolve_model_uri,
    rollback,
)
from ragops.tracking import configure_mlflow


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture
def two_versions(settings):
    """``rag_chain`` with versions 1 and 2 (no artifacts needed), @challenger → 2."""
    client = configure_mlflow(settings, experiment=False)
    name = model_name(settings)
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source="file:///nowhere")
    client.set_registered_model_alias(name, "challenger", "2")
    return settings


def _failing(monkeypatch, method: str, code: int):
    from mlflow import MlflowClient

    def fail(*args, **kwargs):
        raise MlflowException("boom", error_code=code)

    monkeypatch.setattr(MlflowClient, method, fail)


def test_missing_model_or_alias_is_none(settings, two_versions):
    assert alias_version(settings, "challenger") == "2"
    assert alias_version(settings, "champion") is None  # the model exists, the alias does not
    assert alias_version(settings, "champion", name="no_such_model") is None


@pytest.mark.parametrize("code", [PERMISSION_DENIED, INTERNAL_ERROR])
def test_other_registry_failures_propagate(settings, monkeypatch, code):
    _failing(monkeypatch, "get_model_version_by_alias", code)
    with pytest.raises(MlflowException) as err:
        alias_version(settings, "champion")
    assert err.value.error_code == ErrorCode.Name(code)
    with pytest.raises(MlflowException):
        resolve(settings, "models:/rag_chain@champion")
    with pytest.raises(MlflowException):
        promote(settings)  # must not read as "no @challenger to promote"


def test_promote_and_rollback_do_not_hide_other_failures(two_versions, monkeypatch):
    settings = two_versions
    _failing(monkeypatch, "get_model_version", PERMISSION_DENIED)
    with pytest.raises(MlflowException, match="boom"):
        promote(settings, version="1")
    _failing(monkeypatch, "get_registered_model", INTERNAL_ERROR)
    with pytest.raises(MlflowException, match="boom"):
        rollback(settings)


def test_promote_unknown_version_and_rollback_unregistered_are_clear(settings, two_versions, make_settings):
    with pytest.raises(ModelNotRegisteredError, match="no version 9"):
        promote(settings, version="9")
    other = make_settings(model_name="never_registered")
    with pytest.raises(ModelNotRegisteredError, match="not registered"):
        rollback(other)


def test_resolve_aliases_versions_and_uris(two_versions):
    settings = two_versions
    assert resolve(settings, "challenger") == ("models:/rag_chain/2", "2")
    assert resolve(settings, "@challenger") == ("models:/rag_chain/2", "2")
    assert resolve(settings, "models:/rag_chain@challenger") == ("models:/rag_chain/2", "2")
    assert resolve(settings, 1) == ("models:/rag_chain/1", "1")
    assert resolve(settings, "models:/rag_chain/1") == ("models:/rag_chain/1", "1")
    assert resolve(settings, "champion") == ("models:/rag_chain@champion", None)
    assert resolve(settings, "runs:/abc/rag_chain") == ("runs:/abc/rag_chain", None)
    assert resolve_model_uri is resolve  # the name evaluation imports


def test_model_name_is_spelled_once(make_settings):
    local = make_settings(catalog="main", schema="ragops")
    assert model_name(local) == local.registered_model_name == "rag_chain"
    assert model_name(local, unity_catalog=True) == "main.ragops.rag_chain"
    uc = make_settings(catalog="main", schema="ragops", mlflow_tracking_uri="databricks")
    assert model_name(uc) == model_name(uc, unity_catalog=True) == "main.ragops.rag_chain"
    assert {"RESOURCE_DOES_NOT_EXIST"} <= registry.NOT_FOUND_CODES
