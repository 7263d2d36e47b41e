"""The Gradio app's two tabs (UI wiring only; `app.py` assembles and launches them).

Every handler calls into `quora_kids` / `steering` and formats the result for the page.
"""
