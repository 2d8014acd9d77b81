"""
The benchmark harness (`make bench`): a dataset generator (bench.dataset), a runner
that serves the app with gunicorn + uvicorn workers and drives it with wrk
(bench.run, Lua in bench/lua/), and a WebSocket delivery-latency client
(bench.ws_latency). Results go to bench/results/.
"""
