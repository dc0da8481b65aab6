"""References from one kind to another in the same namespace, shared by the kinds that hold them.

Pure: models. MCPServer and MCPRemoteProxy both join a group and may use an outgoing-auth config;
the operator resolves the names and reports a missing target on the referring object.
"""

from __future__ import annotations

from pydantic import Field

from moorage_api.base import ApiModel, ObjectName


class ExternalAuthConfigRef(ApiModel):
    """A reference to an MCPExternalAuthConfig in the same namespace."""

    name: ObjectName = Field(..., description="Name of the MCPExternalAuthConfig.")


class GroupRef(ApiModel):
    """A reference to the MCPGroup (same namespace) this object is a member of."""

    name: ObjectName = Field(..., description="Name of the MCPGroup.")
