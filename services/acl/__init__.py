"""Kafka principals and ACLs derived from the policy: `accord acl plan | apply`, used by the backbone."""
