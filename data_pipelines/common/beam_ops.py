"""The Apache Beam path of the face-video builders (imported only when Beam is used).

``process_videos`` is what ``_generate_examples`` returns under a Beam runner:
``Create(videos) | ParDo(ProcessVideoDoFn)``, one ``VideoProcessor`` (MediaPipe graphs,
ArcFace session) per worker, built in ``setup``. Skips are Beam counters
``<builder>/skipped_<reason>``; used videos count in ``<builder>/videos_used``.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

from data_pipelines.common.preprocess import PreprocessConfig, Skip, VideoItem, VideoProcessor

SKIP_PREFIX = "skipped_"
USED = "videos_used"


class ProcessVideoDoFn(beam.DoFn):
    def __init__(self, config: PreprocessConfig, namespace: str):
        super().__init__()
        self._config = config
        self._namespace = namespace
        self._processor = None

    def setup(self):
        self._processor = VideoProcessor(self._config)

    def process(self, item: VideoItem):
        used = False
        for out in self._processor.process(item):
            if isinstance(out, Skip):
                Metrics.counter(self._namespace, SKIP_PREFIX + out.reason).inc()
            else:
                used = True
                yield out
        if used:
            Metrics.counter(self._namespace, USED).inc()

    def teardown(self):
        if self._processor is not None:
            self._processor.close()


def process_videos(videos: list[VideoItem], config: PreprocessConfig, namespace: str):
    return (beam.Create(list(videos))
            | "ProcessVideo" >> beam.ParDo(ProcessVideoDoFn(config, namespace)))


def read_counters(pipeline_result, namespace: str) -> tuple[dict[str, int], int]:
    """-> ({skip reason: count}, number of used videos) from the finished pipeline."""
    query = pipeline_result.metrics().query(MetricsFilter().with_namespace(namespace))
    skips, used = {}, 0
    for counter in query["counters"]:
        name = counter.key.metric.name
        value = counter.committed if counter.committed is not None else counter.attempted
        if name.startswith(SKIP_PREFIX):
            skips[name[len(SKIP_PREFIX):]] = skips.get(name[len(SKIP_PREFIX):], 0) + int(value)
        elif name == USED:
            used += int(value)
    return skips, used
