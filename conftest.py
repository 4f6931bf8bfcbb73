pytest_plugins = ["relearn.devtools.testing"]
