"""Integrations with training frameworks, part of nightlab's package face: each module imports
only `nightlab` (the face) and its framework, and only when the module itself is imported
(`import nightlab` never loads torch or Lightning)."""
