# The book's hands-on two-topic script (Designing Distributed Systems, "Hands On:
# Implement Reduce"), as printed. crates/server/tests/seed.rs runs it with the
# bootstrap address below changed to the server's.
from kafka import KafkaConsumer
from kafka import KafkaProducer
import time

# Define server with port
bootstrap_servers = ['kafka-headless:9092']

# Define topic name from where the message will recieve
topicName1 = 'photos-topic'
topicName2 = 'photos-topic-2'

# Initialize consumer variable
consumer1 = KafkaConsumer (topicName1, group_id ='group1',bootstrap_servers=bootstrap_servers)
consumer2 = KafkaConsumer (topicName2, group_id ='group2',bootstrap_servers=bootstrap_servers)


# Initialize producer variable
producer = KafkaProducer(bootstrap_servers = bootstrap_servers)

while True:
    msg1 = next(consumer1)
    msg2 = next(consumer2)
    print("Message1=%s Message2=%s"%(msg1.value, msg2.value))
    time.sleep(20)
