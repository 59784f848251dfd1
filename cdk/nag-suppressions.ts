import { type Stack, Validations } from 'aws-cdk-lib';

/**
 * Findings on constructs that CDK creates at the stack level, not in one of Graft's constructs. Each Graft
 * construct acknowledges its own findings next to the resource, with the reason.
 */
export function acknowledgeStackLevelFindings(stack: Stack): void {
  for (const child of stack.node.children) {
    // The singleton Lambda behind Bucket `eventBridgeEnabled` (S3 notification configuration custom resource).
    if (child.node.id.startsWith('BucketNotificationsHandler')) {
      Validations.of(child).acknowledge({
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        reason:
          "CDK's own bucket-notifications handler (it turns on EventBridge delivery for the bucket); its role " +
          'is created by aws-cdk-lib with the basic execution policy and only runs at deploy time.',
      });
    }
  }
}
