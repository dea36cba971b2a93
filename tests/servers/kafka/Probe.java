// Readiness check for tests/servers/kafka.sh: a broker that accepts connections may not yet
// serve produce requests (no controller quorum, no metadata), so "ready" means one message
// produced with acks=all and read back. Run as a single-file program (java Probe.java) with
// the broker's jars on the class path. Exit 0 when the round-trip worked, 1 otherwise.
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class Probe {
    public static void main(String[] args) throws Exception {
        String brokers = args[0];
        String topic = "caf-readiness-probe";
        String value = UUID.randomUUID().toString();
        Properties p = new Properties();
        p.put("bootstrap.servers", brokers);
        p.put("acks", "all");
        p.put("max.block.ms", "10000");
        p.put("delivery.timeout.ms", "10000");
        p.put("request.timeout.ms", "5000");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        RecordMetadata md;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            md = producer.send(new ProducerRecord<>(topic, "probe", value)).get();
        }
        Properties c = new Properties();
        c.put("bootstrap.servers", brokers);
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        c.put("enable.auto.commit", "false");
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            TopicPartition tp = new TopicPartition(topic, md.partition());
            consumer.assign(List.of(tp));
            consumer.seek(tp, md.offset());
            long until = System.currentTimeMillis() + 10_000;
            while (System.currentTimeMillis() < until) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    if (r.value().equals(value)) {
                        System.out.println("produced and read back at offset " + r.offset());
                        return;
                    }
                }
            }
        }
        System.err.println("produced at offset " + md.offset() + " but never read it back");
        System.exit(1);
    }
}
