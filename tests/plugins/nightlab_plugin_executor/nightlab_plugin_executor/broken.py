"""An executor plugin whose import fails, as a plugin with a missing dependency does."""

raise ImportError("nightlab_plugin_executor.broken needs a package that is not installed")
