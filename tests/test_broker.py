"""The embedded defaults' broker: kombu's filesystem transport with atomic writes, under an alias of its own."""

import json

from kombu import Connection
from kombu.transport import filesystem, redis, resolve_transport

from omlpy_dashboard import broker
from omlpy_dashboard.celery import app


def test_the_atomic_transport_has_its_own_alias_and_other_schemes_keep_kombus_own():
    assert app.conf.broker_url  # the app is configured, so the alias is registered in this process
    assert resolve_transport("atomicfs") is broker.Transport
    assert broker.is_file_broker("atomicfs://")
    assert broker.is_file_broker("filesystem://")
    assert not broker.is_file_broker("redis://127.0.0.1:6379/0")
    assert resolve_transport("filesystem") is filesystem.Transport
    assert resolve_transport("redis") is redis.Transport


def test_a_published_message_appears_whole_under_its_final_name(tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False}
    with Connection("atomicfs://", transport_options=options) as conn:
        producer = conn.Producer(serializer="json")
        producer.publish({"job": 42}, routing_key="atomic-test", declare=[conn.SimpleQueue("atomic-test").queue])
        names = sorted(path.name for path in folder.iterdir())
        assert len(names) == 1
        assert names[0].endswith(".atomic-test.msg")
        assert not any(name.endswith(".partial") for name in names)
        # The file holds the whole message: it parses, with its body and delivery properties.
        stored = json.loads((folder / names[0]).read_text())
        assert {"body", "properties", "headers"} <= stored.keys()

        message = conn.SimpleQueue("atomic-test").get(timeout=1)
        assert message.payload == {"job": 42}
        message.ack()
