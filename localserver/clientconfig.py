"""Client configuration for the local server: a small ``clearml.conf`` and the matching CLEARML_* variables.

The conf lowers the SDK's HTTP retries (240 by default) and turns off ``wait_on_maintenance_forever`` so that a
client of a dead server fails within seconds instead of hanging. It also makes the SDK report from a thread
instead of a subprocess: every SDK process otherwise waits ~10 s at exit for its reporter, which dominates the
short pipeline steps of the feedback loop. It holds the secret key, so it is written 0600.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

_CONF = """\
# Written by localserver: client settings for {api_url}
api {{
    api_server: {api}
    web_server: {web}
    files_server: {files}
    credentials {{
        access_key: {access_key}
        secret_key: {secret_key}
    }}
    http {{
        retries {{
            total: 4
            connect: 4
            read: 4
            redirect: 4
            status: 4
            backoff_factor: 0.5
            backoff_max: 4.0
        }}
        wait_on_maintenance_forever: false
    }}
}}
sdk {{
    development {{
        report_use_subprocess: false
    }}
}}
"""


def urls(api_url: str) -> dict[str, str]:
    api_url = api_url.rstrip("/")
    return {"api": api_url, "web": api_url, "files": f"{api_url}/files"}


def client_config_text(api_url: str, access_key: str, secret_key: str) -> str:
    hosts = urls(api_url)
    return _CONF.format(
        api_url=hosts["api"],
        **{key: json.dumps(value) for key, value in hosts.items()},
        access_key=json.dumps(access_key),
        secret_key=json.dumps(secret_key),
    )


def write_client_config(path, api_url: str, access_key: str, secret_key: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, client_config_text(api_url, access_key, secret_key))
    return path


def write_private(path, text: str) -> None:
    """Write ``path`` readable by its owner only (0600: it holds the secret key), replacing it atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)


def client_env(api_url: str, access_key: str, secret_key: str, config_file=None) -> dict[str, str]:
    hosts = urls(api_url)
    env = {
        "CLEARML_API_HOST": hosts["api"],
        "CLEARML_WEB_HOST": hosts["web"],
        "CLEARML_FILES_HOST": hosts["files"],
        "CLEARML_API_ACCESS_KEY": access_key,
        "CLEARML_API_SECRET_KEY": secret_key,
    }
    if config_file:
        env["CLEARML_CONFIG_FILE"] = str(config_file)
    return env
