"""`accord backbone`: provisioning (`provision`), supervision (`supervisor`), the cluster's replication
(`cluster`) and the commands (`cli`)."""

from services.backbone.cli import backbone
from services.backbone.provision import provision

__all__ = ["backbone", "provision"]
