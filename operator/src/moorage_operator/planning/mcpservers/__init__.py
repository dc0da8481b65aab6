"""Pure planning of an MCPServer: its children, its RunConfig, what it references, its status.

- `children`: the objects of spec §3 for an MCPServer (`desired_children`, `plan_mcpserver`).
- `runconfigs`: the RunConfig (spec §3.1) rendered into `<name>-runconfig`.
- `references`: what an MCPServer references and what that resolved to.
- `podtemplates`: the structural check behind `PodTemplateValid`.
- `status`: an MCPServer's phase, conditions and status.
"""
