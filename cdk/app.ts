import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { stackPropsFromContext } from './context.js';
import { GraftStack } from './graft-stack.js';

// `npx cdk synth|deploy [-c graft:gpu=false ...]`: settings come from CDK context (cdk.json or -c), see cdk/context.ts.
const app = new App();
const { stackName, nag, props } = stackPropsFromContext(app.node);
new GraftStack(app, stackName, props);
if (nag) Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
app.synth();
