"""Developer tooling: a local Apache Kafka (KRaft) cluster, secured by default, and its processes."""
