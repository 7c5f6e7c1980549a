"""
What chatd's tests share that is not itself a test (and that chatd does
not ship; the in-memory test doubles are in C{chatd.testing}): real
processes and sockets (L{processes}), certificates (L{certs}), Redis
(L{redisserver}), nginx and HAProxy (L{proxies}), terminals (L{terminal})
and a browser (L{browser}).
"""
