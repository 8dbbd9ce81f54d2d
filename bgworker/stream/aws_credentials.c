/*-------------------------------------------------------------------------
 *
 * aws_credentials.c
 *	  The Kinesis sink's AWS credentials, looked up afresh at every
 *	  (re)connect: the settings ticket_ext.aws_access_key_id /
 *	  aws_secret_access_key, else ticket_ext.aws_credentials_file (the AWS
 *	  shared credentials format, section [default]: aws_access_key_id,
 *	  aws_secret_access_key, aws_session_token), else the server's
 *	  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN.
 *
 * Temporary credentials expire: whatever rotates them (a sidecar, a cron
 * job) rewrites the file, and the sink, told ExpiredTokenException,
 * reconnects and reads it again.  Values are never logged.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "kinesis.h"
#include "storage/fd.h"
#include "stream.h"

/* strip leading and trailing blanks in place */
static char *
trim(char *s)
{
	char	   *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		*--end = '\0';
	return s;
}

/* The [default] section of the credentials file; false + err if unreadable. */
static bool
read_file(AwsCredentials *c, char *err, int errlen)
{
	FILE	   *f = AllocateFile(aws_credentials_file, "r");
	char		line[4096];
	bool		in_default = false;

	if (f == NULL)
	{
		snprintf(err, errlen, "cannot read ticket_ext.aws_credentials_file \"%s\": %m",
				 aws_credentials_file);
		return false;
	}
	while (fgets(line, sizeof(line), f) != NULL)
	{
		char	   *l = trim(line);
		char	   *eq;

		if (*l == '[')
		{
			in_default = strcmp(l, "[default]") == 0;
			continue;
		}
		if (!in_default || *l == '#' || *l == ';' || (eq = strchr(l, '=')) == NULL)
			continue;
		*eq = '\0';
		l = trim(l);
		if (strcmp(l, "aws_access_key_id") == 0)
			strlcpy(c->key, trim(eq + 1), sizeof(c->key));
		else if (strcmp(l, "aws_secret_access_key") == 0)
			strlcpy(c->secret, trim(eq + 1), sizeof(c->secret));
		else if (strcmp(l, "aws_session_token") == 0)
			strlcpy(c->token, trim(eq + 1), sizeof(c->token));
	}
	FreeFile(f);
	explicit_bzero(line, sizeof(line));
	if (c->key[0] == '\0' || c->secret[0] == '\0')
	{
		snprintf(err, errlen, "ticket_ext.aws_credentials_file \"%s\" has no aws_access_key_id and aws_secret_access_key under [default]",
				 aws_credentials_file);
		return false;
	}
	return true;
}

bool
aws_credentials_get(AwsCredentials *c, char *err, int errlen)
{
	const char *env;

	memset(c, 0, sizeof(*c));
	if (aws_access_key_id && aws_access_key_id[0] &&
		aws_secret_access_key && aws_secret_access_key[0])
	{
		strlcpy(c->key, aws_access_key_id, sizeof(c->key));
		strlcpy(c->secret, aws_secret_access_key, sizeof(c->secret));
		if ((env = getenv("AWS_SESSION_TOKEN")) != NULL)
			strlcpy(c->token, env, sizeof(c->token));
		return true;
	}
	if (aws_credentials_file && aws_credentials_file[0])
		return read_file(c, err, errlen);
	if ((env = getenv("AWS_ACCESS_KEY_ID")) != NULL)
		strlcpy(c->key, env, sizeof(c->key));
	if ((env = getenv("AWS_SECRET_ACCESS_KEY")) != NULL)
		strlcpy(c->secret, env, sizeof(c->secret));
	if ((env = getenv("AWS_SESSION_TOKEN")) != NULL)
		strlcpy(c->token, env, sizeof(c->token));
	if (c->key[0] == '\0' || c->secret[0] == '\0')
	{
		snprintf(err, errlen, "no AWS credentials: set ticket_ext.aws_access_key_id/aws_secret_access_key, "
				 "ticket_ext.aws_credentials_file, or the server's AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY");
		return false;
	}
	return true;
}
