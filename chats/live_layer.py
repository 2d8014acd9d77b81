"""
How the live layer's losses show: channels-redis drops an event for a socket whose queue is
full and says so at INFO ("N of M channels over capacity in group ..."). Installed on its logger
by settings.LOGGING (this module imports no models, so logging can load it before Django's apps).
"""
import logging


class LiveLayerDrops(logging.Filter):
    """
    channels-redis drops an event for a socket whose queue is full and says so at INFO ("N of M
    channels over capacity in group ..."): made a WARNING here, with the process's running count
    (LiveLayerDrops.count). The stream still has every dropped event: the socket sends it when
    the next event shows the gap, or at its next stream check.
    """

    count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        # Once per record, however many times logging was configured (each adds the filter again).
        if "over capacity" in str(record.msg) and record.args and not getattr(record, "live_layer_counted", False):
            record.live_layer_counted = True
            LiveLayerDrops.count += int(record.args[0])
            record.msg = f"{record.msg} (dropped by this process so far: %s; sockets catch up from the stream)"
            record.args = (*record.args, LiveLayerDrops.count)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
