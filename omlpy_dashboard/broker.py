"""kombu's filesystem transport, with messages written atomically.

The stock transport writes a message file in place, so a worker listing the folder can pick up a file that
is still empty and stop on the JSON error. Here a message is written under a name the readers ignore and
renamed into place, which is atomic on one filesystem. Everything else is kombu's own code.
"""

from __future__ import annotations

import os
import uuid

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
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
    """Make `filesystem://` URLs use this transport in every process that loads the Celery app."""
    TRANSPORT_ALIASES["filesystem"] = f"{__name__}:Transport"
