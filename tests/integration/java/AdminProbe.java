// Drives Kafka's Java Admin client (from ../shared/kafka's tools jar) for the admin APIs the
// stock tools jar has no command for. Run as a single-file program:
//   java -cp TOOLS_CP AdminProbe.java COMMAND BOOTSTRAP [ARGS...]
// and prints one line per fact, tab-separated, for java_tools_test.py to check.
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;

public class AdminProbe {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        try (Admin admin = Admin.create(props)) {
            switch (args[0]) {
                case "logdirs" -> logDirs(admin);
                case "producers" -> producers(admin, args[2], Integer.parseInt(args[3]));
                case "topics" -> topics(admin, Arrays.asList(args).subList(2, args.length));
                case "broker-configs" -> brokerConfigs(admin, args[2]);
                case "group" -> group(admin, args[2]);
                case "acls" -> acls(admin);
                default -> throw new IllegalArgumentException("unknown command " + args[0]);
            }
        }
    }

    static void logDirs(Admin admin) throws Exception {
        int broker = admin.describeCluster().nodes().get().iterator().next().id();
        var dirs = admin.describeLogDirs(List.of(broker)).allDescriptions().get().get(broker);
        for (var dir : dirs.entrySet()) {
            LogDirDescription d = dir.getValue();
            System.out.printf("logdir\t%s\t%s\t%d\t%d%n", dir.getKey(), d.error() == null ? "none" : d.error(),
                d.totalBytes().orElse(-1), d.usableBytes().orElse(-1));
            for (var r : d.replicaInfos().entrySet())
                System.out.printf("replica\t%s\t%d\t%d\t%d%n", r.getKey().topic(), r.getKey().partition(),
                    r.getValue().size(), r.getValue().offsetLag());
        }
    }

    static void producers(Admin admin, String topic, int partition) throws Exception {
        TopicPartition tp = new TopicPartition(topic, partition);
        var state = admin.describeProducers(List.of(tp)).partitionResult(tp).get();
        for (ProducerState p : state.activeProducers())
            System.out.printf("producer\t%d\t%d\t%d%n", p.producerId(), p.producerEpoch(), p.lastSequence());
    }

    static void topics(Admin admin, List<String> names) throws Exception {
        var options = new DescribeTopicsOptions().partitionSizeLimitPerResponse(2);
        var topics = admin.describeTopics(names, options).allTopicNames().get();
        for (String name : names) {
            TopicDescription t = topics.get(name);
            System.out.printf("topic\t%s\t%s\t%d\t%s%n", t.name(), t.topicId(), t.partitions().size(), t.isInternal());
        }
    }

    static void brokerConfigs(Admin admin, String id) throws Exception {
        ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, id);
        Config config = admin.describeConfigs(List.of(broker)).all().get().get(broker);
        for (ConfigEntry e : config.entries())
            System.out.printf("config\t%s\t%s\t%s%n", e.name(), e.value(), e.source());
    }

    // Listing and creating ACLs: the exception each fails with, or "ok".
    static void acls(Admin admin) {
        String listed, created;
        try {
            admin.describeAcls(org.apache.kafka.common.acl.AclBindingFilter.ANY).values().get();
            listed = "ok";
        } catch (Exception e) {
            listed = e.getCause() == null ? e.toString() : e.getCause().getClass().getSimpleName();
        }
        var binding = new org.apache.kafka.common.acl.AclBinding(
            new org.apache.kafka.common.resource.ResourcePattern(
                org.apache.kafka.common.resource.ResourceType.TOPIC, "t",
                org.apache.kafka.common.resource.PatternType.LITERAL),
            new org.apache.kafka.common.acl.AccessControlEntry("User:alice", "*",
                org.apache.kafka.common.acl.AclOperation.READ,
                org.apache.kafka.common.acl.AclPermissionType.ALLOW));
        try {
            admin.createAcls(List.of(binding)).all().get();
            created = "ok";
        } catch (Exception e) {
            created = e.getCause() == null ? e.toString() : e.getCause().getClass().getSimpleName();
        }
        System.out.printf("acls\t%s\t%s%n", listed, created);
    }

    static void group(Admin admin, String id) throws Exception {
        var group = admin.describeConsumerGroups(List.of(id)).all().get().get(id);
        System.out.printf("group\t%s\t%s%n", group.groupId(), group.state());
        for (MemberDescription m : group.members())
            System.out.printf("member\t%s\t%s\t%s\t%d%n", m.consumerId(), m.host(), m.clientId(),
                m.assignment().topicPartitions().size());
    }
}
