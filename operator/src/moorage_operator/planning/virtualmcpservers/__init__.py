"""Pure planning of a VirtualMCPServer: its backends (`backends`), its children and RunConfig
(`children`) and its status (`status`)."""
