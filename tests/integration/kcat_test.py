"""kcat (librdkafka) against a real spate: metadata, produce with every codec, consume."""
import subprocess

from harness import Broker, Runner


def kcat(broker, *args, data=None, timeout=60):
    done = subprocess.run(["kcat", "-b", broker.bootstrap] + list(args), input=data,
                          capture_output=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError("kcat %s failed (%d): %s\nbroker log:\n%s" % (
            " ".join(args), done.returncode, done.stderr.decode(errors="replace"), broker.read_log()))
    return done.stdout


def test_metadata_lists_broker_and_auto_created_topic():
    with Broker() as b:
        kcat(b, "-P", "-t", "auto", data=b"one\n")
        out = kcat(b, "-L").decode()
        assert "1 brokers" in out, out
        assert 'topic "auto" with 1 partitions' in out, out


def produce_and_consume(b, codec):
    topic = "codec-" + codec
    lines = [("key%d" % i).encode() + b"\t" + (("value-%d-" % i) * (i % 7 + 1)).encode() for i in range(500)]
    kcat(b, "-P", "-t", topic, "-K", "\t", "-z", codec, "-X", "linger.ms=5",
         data=b"\n".join(lines) + b"\n")
    out = kcat(b, "-C", "-t", topic, "-o", "beginning", "-e", "-K", "\t", "-f", "%k\t%s\n")
    got = out.split(b"\n")[:-1]
    assert got == lines, "codec %s: %d records back, first %r" % (codec, len(got), got[:2])


def test_produce_consume_every_codec():
    with Broker() as b:
        for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
            produce_and_consume(b, codec)


def test_consume_from_offset_and_partition():
    with Broker() as b:
        kcat(b, "-P", "-t", "offsets", "-p", "0", data=b"\n".join(b"m%d" % i for i in range(100)) + b"\n")
        out = kcat(b, "-C", "-t", "offsets", "-p", "0", "-o", "90", "-e", "-f", "%o:%s\n")
        assert out.decode().split() == ["%d:m%d" % (i, i) for i in range(90, 100)], out
        out = kcat(b, "-C", "-t", "offsets", "-p", "0", "-o", "-3", "-e", "-f", "%s\n")
        assert out.split() == [b"m97", b"m98", b"m99"], out


if __name__ == "__main__":
    Runner().run([test_metadata_lists_broker_and_auto_created_topic,
                  test_produce_consume_every_codec,
                  test_consume_from_offset_and_partition])
