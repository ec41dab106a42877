"""A plugin module whose import fails, as a broken third-party install does."""

raise ImportError("nightlab_plugin_worker.broken: this module is broken on purpose")
