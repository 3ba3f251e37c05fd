package ec2sim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// newSQS is a real SQS client on the simulator, set up like env's clients.
func newSQS(sim *Server) *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       region,
		BaseEndpoint: aws.String(sim.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDSIMULATOR", "secret", ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts, o.MaxBackoff = 5, 10*time.Millisecond
		}),
	})
}

// receive is one ReceiveMessage call that must succeed.
func receive(t *testing.T, client *sqs.Client, in *sqs.ReceiveMessageInput) []sqstypes.Message {
	t.Helper()
	in.MessageSystemAttributeNames = []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}
	out, err := client.ReceiveMessage(context.Background(), in)
	if err != nil {
		t.Fatalf("ReceiveMessage: %v", err)
	}
	return out.Messages
}

func send(t *testing.T, client *sqs.Client, url, body string) string {
	t.Helper()
	out, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)})
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	return aws.ToString(out.MessageId)
}

// waitForReceivers waits until n long polls wait on the queue, so a test
// knows what it does next happens while they wait.
func waitForReceivers(t *testing.T, sim *Server, queueName string, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		sim.mu.Lock()
		defer sim.mu.Unlock()
		return sim.queues[queueName].receivers == n, nil
	})
	if err != nil {
		t.Fatalf("waiting for %d long polls on %s: %v", n, queueName, err)
	}
}

func TestSQSCreateQueueAndFindIt(t *testing.T) {
	e := newEnv(t)
	client := newSQS(e.sim)
	ctx := context.Background()
	attrs := map[string]string{"VisibilityTimeout": "10", "MessageRetentionPeriod": "120"}
	created, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("interruptions"), Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	url := aws.ToString(created.QueueUrl)
	if want := e.sim.URL + "/" + e.sim.Scenario().AccountID + "/interruptions"; url != want {
		t.Errorf("queue URL %s, want %s", url, want)
	}
	again, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("interruptions"), Attributes: attrs})
	if err != nil || aws.ToString(again.QueueUrl) != url {
		t.Errorf("creating it again: %v %v, want the same URL", again, err)
	}
	var exists *sqstypes.QueueNameExists
	if _, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("interruptions"), Attributes: map[string]string{"VisibilityTimeout": "20"}}); !errors.As(err, &exists) {
		t.Errorf("creating it with another visibility timeout: want *types.QueueNameExists, got %T %v", err, err)
	}
	if got := e.sim.CreateQueue("interruptions"); got != url {
		t.Errorf("Server.CreateQueue of the existing queue returned %s", got)
	}

	found, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("interruptions")})
	if err != nil || aws.ToString(found.QueueUrl) != url {
		t.Errorf("GetQueueUrl: %v %v", found, err)
	}
	got, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"QueueArn":                    "arn:aws:sqs:ap-northeast-2:" + e.sim.Scenario().AccountID + ":interruptions",
		"VisibilityTimeout":           "10",
		"MessageRetentionPeriod":      "120",
		"ApproximateNumberOfMessages": "0",
	} {
		if got.Attributes[name] != want {
			t.Errorf("attribute %s = %q, want %q", name, got.Attributes[name], want)
		}
	}

	var missing *sqstypes.QueueDoesNotExist
	_, err = client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	if !errors.As(err, &missing) || errorCode(err) != "AWS.SimpleQueueService.NonExistentQueue" {
		t.Errorf("GetQueueUrl of an unknown queue: want *types.QueueDoesNotExist with SQS's query code, got %T %v", err, err)
	}
	_, err = client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(strings.Replace(url, "interruptions", "nope", 1))})
	if !errors.As(err, &missing) {
		t.Errorf("ReceiveMessage on an unknown queue: want *types.QueueDoesNotExist, got %T %v", err, err)
	}
}

func TestSQSSendReceiveDelete(t *testing.T) {
	e := newEnv(t)
	client := newSQS(e.sim)
	ctx := context.Background()
	url := e.sim.CreateQueue("q")
	// The SDK checks MD5OfMessageBody on send and MD5OfBody on receive.
	body := `{"detail-type":"test","note":"<&>"}`
	id := send(t, client, url, body)
	got := receive(t, client, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10})
	if len(got) != 1 || aws.ToString(got[0].MessageId) != id || aws.ToString(got[0].Body) != body || got[0].Attributes["ApproximateReceiveCount"] != "1" {
		t.Fatalf("received %+v", got)
	}
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
	}})
	if err != nil || attrs.Attributes["ApproximateNumberOfMessages"] != "0" || attrs.Attributes["ApproximateNumberOfMessagesNotVisible"] != "1" {
		t.Errorf("counts with the message in flight: %v %v", attrs.Attributes, err)
	}
	if msgs := e.sim.QueueMessages("q"); len(msgs) != 1 || !msgs[0].InFlight || msgs[0].ReceiveCount != 1 || msgs[0].Body != body {
		t.Errorf("QueueMessages %+v", msgs)
	}
	if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: got[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	if msgs := e.sim.QueueMessages("q"); len(msgs) != 0 {
		t.Errorf("after DeleteMessage: %+v", msgs)
	}

	for _, b := range []string{"a", "b", "c"} {
		send(t, client, url, b)
	}
	got = receive(t, client, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10})
	if len(got) != 3 {
		t.Fatalf("received %d of 3", len(got))
	}
	entries := []sqstypes.DeleteMessageBatchRequestEntry{{Id: aws.String("bogus"), ReceiptHandle: aws.String("not-a-handle")}}
	for i, m := range got {
		entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(string(rune('a' + i))), ReceiptHandle: m.ReceiptHandle})
	}
	batch, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
	if err != nil {
		t.Fatal(err)
	}
	if len(batch.Successful) != 3 || len(batch.Failed) != 1 || aws.ToString(batch.Failed[0].Id) != "bogus" ||
		aws.ToString(batch.Failed[0].Code) != "ReceiptHandleIsInvalid" || !batch.Failed[0].SenderFault {
		t.Errorf("batch delete: %+v", batch)
	}
	if msgs := e.sim.QueueMessages("q"); len(msgs) != 0 {
		t.Errorf("after DeleteMessageBatch: %+v", msgs)
	}

	send(t, client, url, "purged")
	if _, err := client.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(url)}); err != nil {
		t.Fatal(err)
	}
	if msgs := e.sim.QueueMessages("q"); len(msgs) != 0 {
		t.Errorf("after PurgeQueue: %+v", msgs)
	}
	var inProgress *sqstypes.PurgeQueueInProgress
	if _, err := client.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(url)}); !errors.As(err, &inProgress) {
		t.Errorf("a second purge within 60s: want *types.PurgeQueueInProgress, got %T %v", err, err)
	}
	e.sim.Advance(sqsPurgeInterval)
	if _, err := client.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(url)}); err != nil {
		t.Errorf("a purge a minute later: %v", err)
	}
}

func TestSQSVisibilityTimeoutRedelivers(t *testing.T) {
	e := newEnv(t)
	client := newSQS(e.sim)
	ctx := context.Background()
	url := e.sim.CreateQueue("q") // VisibilityTimeout 30s
	id := send(t, client, url, "hello")
	first := receive(t, client, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url)})
	if len(first) != 1 {
		t.Fatalf("first receive: %+v", first)
	}
	if again := receive(t, client, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url)}); len(again) != 0 {
		t.Errorf("received %d in-flight messages", len(again))
	}
	e.sim.Advance(30 * time.Second)
	second := receive(t, client, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), VisibilityTimeout: 5})
	if len(second) != 1 || aws.ToString(second[0].MessageId) != id || second[0].Attributes["ApproximateReceiveCount"] != "2" {
		t.Fatalf("after the visibility timeout: %+v", second)
	}
	if aws.ToString(second[0].ReceiptHandle) == aws.ToString(first[0].ReceiptHandle) {
		t.Error("the second receive has the first one's receipt handle")
	}
	// The receive's own visibility timeout (5s) applies, not the queue's.
	e.sim.Advance(5 * time.Second)
	third := receive(t, client, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url)})
	if len(third) != 1 || third[0].Attributes["ApproximateReceiveCount"] != "3" {
		t.Fatalf("after the receive's visibility timeout: %+v", third)
	}

	var invalid *sqstypes.ReceiptHandleIsInvalid
	if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: first[0].ReceiptHandle}); !errors.As(err, &invalid) {
		t.Errorf("deleting with a stale receipt handle: want *types.ReceiptHandleIsInvalid, got %T %v", err, err)
	}
	if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: third[0].ReceiptHandle}); err != nil {
		t.Errorf("deleting with the latest receipt handle: %v", err)
	}
	if msgs := e.sim.QueueMessages("q"); len(msgs) != 0 {
		t.Errorf("left %+v", msgs)
	}
}

func TestSQSRetentionDropsOldMessages(t *testing.T) {
	e := newEnv(t)
	client := newSQS(e.sim)
	created, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String("q"), Attributes: map[string]string{"MessageRetentionPeriod": "60"}})
	if err != nil {
		t.Fatal(err)
	}
	send(t, client, aws.ToString(created.QueueUrl), "old")
	e.sim.Advance(59 * time.Second)
	if msgs := e.sim.QueueMessages("q"); len(msgs) != 1 {
		t.Fatalf("before the retention period: %+v", msgs)
	}
	e.sim.Advance(time.Second)
	if got := receive(t, client, &sqs.ReceiveMessageInput{QueueUrl: created.QueueUrl}); len(got) != 0 {
		t.Errorf("received %+v after the retention period", got)
	}
}

func TestSQSLongPollReturnsWhenAMessageArrives(t *testing.T) {
	e := newEnv(t)
	client := newSQS(e.sim)
	url := e.sim.CreateQueue("q")

	// Nothing arrives: the poll lasts WaitTimeSeconds.
	start := time.Now()
	if got := receive(t, client, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 1}); len(got) != 0 || time.Since(start) < time.Second {
		t.Errorf("empty long poll: %d messages after %s", len(got), time.Since(start))
	}

	// A 20 second poll bounded to 10: it must end when the message comes.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan *sqs.ReceiveMessageOutput, 1)
	go func() {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 20})
		if err != nil {
			t.Errorf("long poll: %v", err)
		}
		done <- out
	}()
	waitForReceivers(t, e.sim, "q", 1)
	send(t, client, url, "wake up")
	out := <-done
	if out == nil || len(out.Messages) != 1 || aws.ToString(out.Messages[0].Body) != "wake up" {
		t.Errorf("long poll returned %+v", out)
	}
}

func TestSQSLongPollReturnsWhenAdvanceMakesAMessageVisible(t *testing.T) {
	e := newEnv(t)
	client := newSQS(e.sim)
	url := e.sim.CreateQueue("q")
	send(t, client, url, "again")
	if got := receive(t, client, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url)}); len(got) != 1 {
		t.Fatalf("first receive: %+v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan *sqs.ReceiveMessageOutput, 1)
	go func() {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 20})
		if err != nil {
			t.Errorf("long poll: %v", err)
		}
		done <- out
	}()
	waitForReceivers(t, e.sim, "q", 1)
	e.sim.Advance(30 * time.Second)
	if out := <-done; out == nil || len(out.Messages) != 1 {
		t.Errorf("long poll across the visibility timeout returned %+v", out)
	}
}

func TestSQSLongPollEndsWithTheRequestAndTheServer(t *testing.T) {
	e := newEnv(t)
	client := newSQS(e.sim)
	url := e.sim.CreateQueue("q")

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 20})
	}()
	waitForReceivers(t, e.sim, "q", 1)
	cancel()
	// The server notices the client gave up and stops waiting.
	waitForReceivers(t, e.sim, "q", 0)

	bounded, cancelBounded := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelBounded()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = client.ReceiveMessage(bounded, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 20})
	}()
	waitForReceivers(t, e.sim, "q", 1)
	_ = e.sim.Close()
	waitForReceivers(t, e.sim, "q", 0)
	select {
	case <-done:
	case <-bounded.Done():
		t.Error("the long poll outlived the server")
	}
}

func TestSQSRejectsInvalidReceives(t *testing.T) {
	e := newEnv(t)
	client := newSQS(e.sim)
	url := aws.String(e.sim.CreateQueue("q"))
	for _, tc := range []struct {
		name string
		in   *sqs.ReceiveMessageInput
	}{
		{"MaxNumberOfMessages 11", &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 11}},
		{"MaxNumberOfMessages -1", &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: -1}},
		{"WaitTimeSeconds 21", &sqs.ReceiveMessageInput{QueueUrl: url, WaitTimeSeconds: 21}},
		{"VisibilityTimeout 43201", &sqs.ReceiveMessageInput{QueueUrl: url, VisibilityTimeout: 43201}},
	} {
		_, err := client.ReceiveMessage(context.Background(), tc.in)
		if errorCode(err) != "InvalidParameterValue" || !strings.Contains(err.Error(), "is invalid") {
			t.Errorf("%s: want InvalidParameterValue, got %v", tc.name, err)
		}
	}
	if _, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String(strings.Repeat("x", sqsMaxBodyBytes+1))}); errorCode(err) != "InvalidParameterValue" {
		t.Errorf("a body over 256 KiB: want InvalidParameterValue, got %v", err)
	}
}

func TestSQSInjectedFaults(t *testing.T) {
	e := newEnv(t)
	client := newSQS(e.sim)
	url := aws.String(e.sim.CreateQueue("q"))
	ctx := context.Background()

	e.sim.FailNext("AmazonSQS.ReceiveMessage", "OverLimit", 403, 1)
	var overLimit *sqstypes.OverLimit
	if _, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url}); !errors.As(err, &overLimit) {
		t.Errorf("injected OverLimit: want *types.OverLimit, got %T %v", err, err)
	}
	e.sim.FailNext("AmazonSQS.ReceiveMessage", "InternalError", 500, 2)
	if _, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url}); err != nil {
		t.Errorf("two injected 500s are retried: %v", err)
	}
	if got := e.sim.Calls("AmazonSQS.ReceiveMessage"); got != 4 {
		t.Errorf("%d ReceiveMessage attempts, want 4 (1 refused, 2 failed, 1 answered)", got)
	}
}

func TestSQSSendRaw(t *testing.T) {
	e := newEnv(t)
	client := newSQS(e.sim)
	if err := e.sim.SendRaw("q", "x"); err == nil {
		t.Error("sent to a queue that does not exist")
	}
	url := e.sim.CreateQueue("q")
	if err := e.sim.SendRaw("q", ""); err == nil {
		t.Error("sent an empty body, which SQS refuses")
	}
	if err := e.sim.SendRaw("q", "{not json"); err != nil {
		t.Fatal(err)
	}
	got := receive(t, client, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url)})
	if len(got) != 1 || aws.ToString(got[0].Body) != "{not json" {
		t.Errorf("received %+v", got)
	}
}

// At-least-once delivery: with Duplicate 0.5 every second deleted message
// comes back once, same id and body, new receipt handle; its redelivery is
// not redelivered again. Fails when redeliverLocked ignores the share (tried
// `!q.duplicates.hit()` -> `false`: all three came back) or copies the copy
// (tried dropping `m.redelivered ||`: the copy came back once more).
func TestSQSDuplicateDeliveryBringsDeletedMessagesBack(t *testing.T) {
	e := newEnv(t)
	client := newSQS(e.sim)
	url := aws.String(e.sim.CreateQueue("q"))
	if err := e.sim.SetDeliveryFaults("q", DeliveryFaults{Duplicate: 0.5}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, body := range []string{"a", "b", "c"} {
		ids[send(t, client, *url, body)] = body
	}
	deliveries := map[string]int{}
	for range 10 {
		got := receive(t, client, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 10})
		if len(got) == 0 {
			break
		}
		for _, m := range got {
			id := aws.ToString(m.MessageId)
			if ids[id] != aws.ToString(m.Body) {
				t.Errorf("message %s came back with body %q, want %q", id, aws.ToString(m.Body), ids[id])
			}
			deliveries[id]++
			if _, err := client.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: url, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	twice := 0
	for id, n := range deliveries {
		switch n {
		case 1:
		case 2:
			twice++
		default:
			t.Errorf("message %s delivered %d times", id, n)
		}
	}
	// Deletes 1..4 (three originals, one copy): the 2nd and the 4th hit the
	// share, and the 4th is a copy's, which stays deleted.
	if len(deliveries) != 3 || twice != 1 {
		t.Errorf("deliveries %v: want each of 3 messages, one of them twice", deliveries)
	}
	if n := len(e.sim.QueueMessages("q")); n != 0 {
		t.Errorf("%d messages left", n)
	}
}

// Best-effort ordering: with Reorder a receive does not always hand out the
// oldest message first. Fails when receiveLocked ignores Reorder (tried
// removing the shuffle: every receive took "m0").
func TestSQSReorderedDelivery(t *testing.T) {
	e := newEnv(t)
	client := newSQS(e.sim)
	url := aws.String(e.sim.CreateQueue("q"))
	if err := e.sim.SetDeliveryFaults("q", DeliveryFaults{Reorder: true}); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		send(t, client, *url, fmt.Sprintf("m%d", i))
	}
	firsts := map[string]bool{}
	// firstOfAll receives one message and lets it become visible again.
	firstOfAll := func() string {
		got := receive(t, client, &sqs.ReceiveMessageInput{QueueUrl: url})
		if len(got) != 1 {
			t.Fatalf("received %d messages, want 1", len(got))
		}
		e.sim.Advance(31 * time.Second)
		return aws.ToString(got[0].Body)
	}
	for range 8 {
		firsts[firstOfAll()] = true
	}
	if len(firsts) < 2 {
		t.Errorf("8 receives of a reordering queue all took %v first", firsts)
	}
	e.sim.Heal()
	for range 3 {
		if got := firstOfAll(); got != "m0" {
			t.Errorf("after Heal a receive took %q, want the oldest, m0", got)
		}
	}
}
