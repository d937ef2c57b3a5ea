"""The broker of the embedded defaults: kombu's filesystem transport with messages written atomically.

The stock transport writes a message file in place, so a worker listing the folder can pick up a file that
is still empty and stop on the JSON error. This one writes a message under a name the readers ignore and
renames it into place, which is atomic on one filesystem. Everything else is kombu's own code.

It is registered under an alias of its own, `atomicfs://` (the default CELERY_BROKER_URL), so that
`filesystem://` keeps meaning kombu's transport and no other URL scheme changes behaviour.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

ALIAS = "atomicfs"
# URL schemes served by files under VAR_DIR/broker: this transport and kombu's own.
FILE_SCHEMES = (ALIAS, "filesystem")


def is_file_broker(url: str) -> bool:
    return url.split("://", 1)[0] in FILE_SCHEMES


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:
        name = f"{round(filesystem.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.partial"
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def install() -> None:
    """Register `atomicfs://` in every process that loads the Celery app."""
    TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"
