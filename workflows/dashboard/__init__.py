"""The operator dashboard: server-rendered pages over the selectors and services.

Views stay thin: they read through ``workflows.selectors``, write through
``workflows.services``, and turn domain errors into a message on the page.
"""
