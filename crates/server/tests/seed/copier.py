# The book's hands-on copier (Designing Distributed Systems, "Hands On: Implement
# Copier"), as printed but for one thing: the book sends `msg`, the whole
# ConsumerRecord, which kafka-python refuses on every broker ("Unsupported type for
# serialized value"), so this sends `msg.value`. crates/server/tests/seed.rs runs it
# with the bootstrap address below changed to the server's.
from kafka import KafkaConsumer
from kafka import KafkaProducer

# Define server with port
bootstrap_servers = ['kafka-headless:9092']

# Define topic name from where the message will recieve
topicName = 'photos-topic'

# Initialize consumer variable
consumer = KafkaConsumer (topicName, group_id ='group1',bootstrap_servers=bootstrap_servers)


# Initialize producer variable
producer = KafkaProducer(bootstrap_servers = bootstrap_servers)

for msg in consumer:
    print("Topic Name=%s,Message=%s"%(msg.topic,msg.value))
    second_topic = 'photos-topic-2'
    producer.send(second_topic, msg.value)
