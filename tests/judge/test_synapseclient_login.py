"""Login and user profile through the official client (synapse-api.md 1.1-1.4)."""

from __future__ import annotations

import pytest

import synapseclient
from synapseclient.core.exceptions import SynapseAuthenticationError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_login_with_token_argument_and_profile(clients, user):
    syn = clients.new(user.token)
    assert syn.credentials is not None
    assert syn.credentials.username == user.user_name
    assert str(syn.credentials.owner_id) == str(user.id)

    profile = syn.getUserProfile()
    assert profile["userName"] == user.user_name
    assert str(profile["ownerId"]) == str(user.id)
    assert "emails" in profile

    # someone else's profile by id
    other = clients.new(user.token)
    assert other.getUserProfile(user.id)["userName"] == user.user_name


def test_login_from_config_file_endpoints_and_authentication_sections(clients, user):
    syn = clients.from_config(user.token)
    ep = clients.endpoints()
    assert syn.repoEndpoint == ep["repoEndpoint"]
    assert syn.fileHandleEndpoint == ep["fileHandleEndpoint"]
    assert syn.authEndpoint == ep["authEndpoint"]
    assert syn.credentials.username == user.user_name
    assert syn.getUserProfile()["userName"] == user.user_name


def test_login_from_config_file_transfer_section_enables_boto_sts(clients, user):
    syn = clients.from_config(user.token, extra="[transfer]\nuse_boto_sts = true\nmax_threads = 4\n")
    assert syn.use_boto_sts_transfers is True
    assert syn.max_threads == 4


def test_bad_token_is_the_clients_auth_error(clients):
    syn = clients.new(login=False)
    with pytest.raises(SynapseAuthenticationError) as excinfo:
        syn.login(authToken="not-a-valid-token", silent=True)
    # the 401 from GET /userProfile (reason "Invalid access token") is chained as the cause
    cause = excinfo.value.__cause__
    assert cause is not None, "expected the 401 SynapseHTTPError as cause"
    assert getattr(cause.response, "status_code", None) == 401
    assert "Invalid access token" in str(cause)
    assert syn.credentials is None


def test_anonymous_client_cannot_read_private_project(clients, user):
    owner = clients.new(user.token)
    project = owner.store(synapseclient.Project(name=f"private {user.user_name}"))
    anon = clients.new(login=False)
    with pytest.raises(SynapseAuthenticationError):
        anon.get(project["id"])


def test_network_guard_is_active(offline_network):
    """The judge's socket guard refuses the internet (so a client default endpoint, PyPI
    version check or AWS endpoint would fail the test that used it)."""
    import requests

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get("https://pypi.org/pypi/synapseclient/json", timeout=5)
    assert offline_network, "the attempt was not recorded"
    offline_network.clear()


def test_default_endpoints_would_be_production(clients, user, tmp_path):
    """Sanity of the configuration: without the endpoint arguments the client would target
    production, so every other test really is pointed at the emulator by configuration."""
    syn = synapseclient.Synapse(skip_checks=True, configPath=str(tmp_path / "absent"),
                                cache_root_dir=str(tmp_path / "c"), silent=True)
    assert syn.repoEndpoint.startswith("https://repo-prod.prod.sagebase.org")
    configured = clients.new(user.token)
    assert configured.repoEndpoint == clients.endpoints()["repoEndpoint"]
