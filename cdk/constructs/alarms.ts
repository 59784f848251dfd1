import { Duration, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

export interface AlarmsProps {
  readonly deadLetterQueue: sqs.IQueue;
  readonly api: lambda.IFunction;
  /** The function that fails the job of a trainer AWS Batch stopped for good. */
  readonly batchEventsHandler: lambda.IFunction;
  /** Errors (uncaught exceptions, timeouts) of the API function in 5 minutes that raise the alarm. @default 5 */
  readonly apiErrorThreshold?: number;
  /** Address that receives the alarms (through an SNS topic). @default - alarms without notification */
  readonly alarmEmail?: string;
}

/** What needs a person: a message dead-lettered, a Batch failure not recorded, and API errors. */
export class Alarms extends Construct {
  readonly deadLetters: cloudwatch.Alarm;
  readonly apiErrors: cloudwatch.Alarm;
  readonly batchEventErrors: cloudwatch.Alarm;
  readonly topic: sns.Topic | undefined;

  constructor(scope: Construct, id: string, props: AlarmsProps) {
    super(scope, id);
    // Each alarm fires on the sum over 5 minutes reaching its threshold; no data is no trouble.
    const sumAlarm = (id: string, alarmDescription: string, metric: cloudwatch.IMetric, threshold: number) =>
      new cloudwatch.Alarm(this, id, {
        alarmDescription,
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    const every5Minutes = { period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM };
    // The dead-letter handler consumes the queue within seconds, so what is counted is messages received from it:
    // every dead letter (and every retry of one the handler could not settle yet) raises the alarm.
    this.deadLetters = sumAlarm(
      'DeadLetters',
      'A queue message failed 3 deliveries and was dead-lettered. The dead-letter handler marked its job failed ' +
        '(DELIVERIES_EXHAUSTED, the reason is on the job) or, for an incoming file, logged its key: look at the ' +
        'dead-letter handler, dispatcher and trainer logs, fix the cause, then retry the job or copy the file again.',
      props.deadLetterQueue.metricNumberOfMessagesReceived(every5Minutes),
      1,
    );
    // Lambda retries a failed event twice, then drops it: any error may mean a job left `running`.
    this.batchEventErrors = sumAlarm(
      'BatchEventErrors',
      'The Batch events function could not record that AWS Batch stopped a trainer (S3 unavailable?): its job ' +
        'may stay running. Its log names the job; fix the cause, then train the job again.',
      props.batchEventsHandler.metricErrors(every5Minutes),
      1,
    );
    this.apiErrors = sumAlarm(
      'ApiErrors',
      'The API function failed (uncaught errors or timeouts): look at its logs.',
      props.api.metricErrors(every5Minutes),
      props.apiErrorThreshold ?? 5,
    );
    if (props.alarmEmail) {
      this.topic = new sns.Topic(this, 'Topic', { enforceSSL: true, displayName: 'Graft alarms' });
      this.topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
      for (const alarm of [this.deadLetters, this.batchEventErrors, this.apiErrors])
        alarm.addAlarmAction(new actions.SnsAction(this.topic));
      Validations.of(this.topic).acknowledge({
        id: 'AwsSolutions-SNS2',
        reason:
          'CloudWatch alarms cannot publish to a topic encrypted with the AWS managed SNS key, and alarm ' +
          'notifications carry no data beyond the alarm state.',
      });
    }
  }
}
