"""A minimal Faust worker with a table, run as its own process by test_faust_table.py.

It counts words into a Table (backed by a changelog topic Faust declares
itself) and forwards each new count to an output topic, which is what the
project's services do at scale: state in a table, results in a topic.

Configured by environment: FAUST_TEST_BROKERS (`host:port,...`), its credentials as
`KafkaSettings` reads them (ACCORD_KAFKA_*),
FAUST_TEST_NAMESPACE (prefix of the app id and topics), FAUST_TEST_DATADIR.
"""

from __future__ import annotations

import os

import faust

from services.core.settings import KafkaSettings

NAMESPACE = os.environ["FAUST_TEST_NAMESPACE"]
PARTITIONS = 2

app = faust.App(
    NAMESPACE + "wordcount",
    broker=";".join(f"kafka://{hp}" for hp in os.environ["FAUST_TEST_BROKERS"].split(",")),
    datadir=os.environ["FAUST_TEST_DATADIR"],
    store="memory://",
    topic_replication_factor=1,
    topic_partitions=PARTITIONS,
    web_enabled=False,
    broker_credentials=KafkaSettings().connection.faust_credentials(),
)

words = app.topic(NAMESPACE + "words", key_type=bytes, value_type=bytes,
                  key_serializer="raw", value_serializer="raw")  # fmt: skip
counts_out = app.topic(NAMESPACE + "counts", key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")  # fmt: skip
counts = app.Table("counts", default=int, partitions=PARTITIONS)


@app.agent(words)
async def count_words(stream: faust.StreamT[bytes]) -> None:
    """Events arrive keyed by word, so each word's count lives in its own partition."""
    async for word in stream:
        counts[word.decode()] += 1
        await counts_out.send(key=word, value=str(counts[word.decode()]).encode())


if __name__ == "__main__":
    app.main()
