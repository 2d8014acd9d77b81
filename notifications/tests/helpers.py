# A browser's push subscription keys, as PushSubscription.toJSON() gives them: a P-256 public point
# (65 bytes) and a 16-byte auth secret, base64url. For tests that need a subscription but no push.
PUSH_KEYS = {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
             "auth": "tBHItJI5svbpez7KI4CCXg"}
