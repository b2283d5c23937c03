"""One builder per CRM: its secrets, buckets, vendor profile and settings from the config, which the
sources never see. Adding a CRM is its source module, its fake, and one line in `SOURCES`."""

from __future__ import annotations

from collections.abc import Callable

from syncd import config as configuration
from syncd.http import HttpClient
from syncd.profile import Profile
from syncd.ratelimit import TokenBucket
from syncd.sources import Source, hubspot, pipedrive, salesforce
from syncd.sources.refresh_token import RefreshToken, token_file

ClientFactory = Callable[[dict[str, str], dict[str, TokenBucket], Profile], HttpClient]
TOKEN_HINT = "the variable named by [crm] token_env"


def build_source(cfg: configuration.Config, client: ClientFactory) -> Source:
    """The configured CRM's source. `client(auth_headers, buckets, profile)` builds its HTTP client; each builder
    below reads that CRM's secrets and settings from the config, which the sources never see."""
    return SOURCES[cfg.crm.kind](cfg, client)


def hubspot_source(cfg: configuration.Config, client: ClientFactory) -> Source:
    http = client(
        {"Authorization": f"Bearer {configuration.read_secret(cfg.crm.token_env)}"},
        {
            "default": TokenBucket.for_limit(cfg.crm.requests_per_10_seconds, 10.0),
            "search": TokenBucket.for_limit(cfg.crm.search_per_second, 1.0),
        },
        hubspot.PROFILE,
    )
    return hubspot.HubSpotSource(http, cfg.crm_properties, page_size=cfg.crm.page_size, credential_hint=TOKEN_HINT)


def salesforce_source(cfg: configuration.Config, client: ClientFactory) -> Source:
    client_id = configuration.read_secret(cfg.crm.client_id_env)
    client_secret = configuration.read_secret(cfg.crm.client_secret_env)
    refresh_token = configuration.read_secret(cfg.crm.refresh_token_env)
    http = client({}, {"default": TokenBucket.for_limit(cfg.crm.requests_per_10_seconds, 10.0)}, salesforce.PROFILE)
    return salesforce.SalesforceSource(
        http,
        cfg.crm_properties,
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=RefreshToken(refresh_token, token_file(cfg.state_path)),
        api_version=cfg.crm.api_version,
        fields=cfg.crm.fields,
        page_size=cfg.crm.page_size,
        stop_percent=cfg.crm.api_usage_stop_percent,
        credential_hint="the variables named by [crm] client_id_env, client_secret_env, refresh_token_env",
    )


def pipedrive_source(cfg: configuration.Config, client: ClientFactory) -> Source:
    """The token goes in the `x-api-token` header, never the URL. Pipedrive's burst limit is per rolling 2 s
    (Lite 20, Growth 40, …); `requests_per_10_seconds` = 5x that, and the bucket spaces requests evenly."""
    http = client(
        {"x-api-token": configuration.read_secret(cfg.crm.token_env)},
        {"default": TokenBucket.for_limit(cfg.crm.requests_per_10_seconds, 10.0)},
        pipedrive.PROFILE,
    )
    return pipedrive.PipedriveSource(http, cfg.crm_properties, page_size=cfg.crm.page_size, credential_hint=TOKEN_HINT)


SOURCES: dict[str, Callable[[configuration.Config, ClientFactory], Source]] = {
    "hubspot": hubspot_source,
    "salesforce": salesforce_source,
    "pipedrive": pipedrive_source,
}
