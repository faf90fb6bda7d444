#!/usr/bin/perl
# Runs the server in a forked child, as a daemon would; each request runs `false`.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Tiny::Server;

my $pid = fork() // die "fork: $!";
if ($pid == 0) {
    Tiny::Server::run(sub {
        my $status = system('false');
        print "request $_[0]: system('false') returned $status", ($status == -1 ? ": $!" : ''), "\n";
    });
    exit 0;
}
waitpid($pid, 0);
