"""pggan-explore: a local web page that shows what a trained generator draws.

session.py  the checkpoints of a source, generators loaded and compiled once, every request checked
            (seeds, grid sizes, latents) and answered as uint8 images; no web code
page.py     the Gradio page over a session (one request at a time), started on 127.0.0.1
browser.py  the page driven by a headless Chromium (Selenium), for the tests and the latency measurement
"""
